package config

// Overrides are the command-line flags that take precedence over the file.
// An empty field means the flag was not given.
type Overrides struct {
	// Listen (--listen ADDR) replaces the first listener's address; with no
	// listener configured it adds one with that address. A listener whose
	// allow_anonymous was not set follows the new address (loopback or not).
	Listen string
	// Upstream (--upstream URL) replaces upstream.url.
	Upstream string
	// DataDir (--data-dir DIR) replaces queue.dir.
	DataDir string
	// ClientID (--client-id ID) replaces upstream.client_id.
	ClientID string
}

// Flag names, as they appear in errors.
const (
	FlagListen   = "--listen"
	FlagUpstream = "--upstream"
	FlagDataDir  = "--data-dir"
	FlagClientID = "--client-id"
)

// Apply applies the overrides to a configuration already loaded and
// validates the result. Errors about an overridden value name the flag
// ("config: --upstream: unsupported scheme \"tcp\"") instead of the key.
// LoadWith is the better way from a file: it does not report problems in
// file values that the flags replace.
func (c *Config) Apply(o Overrides) error {
	c.apply(o)
	return c.Validate()
}

// apply sets the values the flags give and remembers which flag set them.
func (c *Config) apply(o Overrides) {
	src := c.source()
	if o.Listen != "" {
		if len(c.Listeners) == 0 {
			c.Listeners = []Listener{DefaultListener()}
		}
		c.Listeners[0].Address = o.Listen
		src.flags[pathListen] = FlagListen
	}
	if o.Upstream != "" {
		c.Upstream.URL = o.Upstream
		src.flags[pathUpstream] = FlagUpstream
	}
	if o.DataDir != "" {
		c.Queue.Dir = o.DataDir
		src.flags[pathDataDir] = FlagDataDir
	}
	if o.ClientID != "" {
		c.Upstream.ClientID = o.ClientID
		src.flags[pathClientID] = FlagClientID
	}
}

// The key paths the flags replace.
const (
	pathListen   = "listeners[0].address"
	pathUpstream = "upstream.url"
	pathDataDir  = "queue.dir"
	pathClientID = "upstream.client_id"
)

// paths returns the key paths whose file values the overrides replace.
func (o Overrides) paths() map[string]bool {
	p := map[string]bool{}
	for path, v := range map[string]string{
		pathListen: o.Listen, pathUpstream: o.Upstream, pathDataDir: o.DataDir, pathClientID: o.ClientID,
	} {
		if v != "" {
			p[path] = true
		}
	}
	return p
}
