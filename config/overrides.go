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

// Apply applies the overrides and validates the result. Errors about an
// overridden value name the flag ("config: --upstream: unsupported scheme
// \"tcp\"") instead of the key.
func (c *Config) Apply(o Overrides) error {
	src := c.source()
	if o.Listen != "" {
		if len(c.Listeners) == 0 {
			c.Listeners = []Listener{DefaultListener()}
		}
		c.Listeners[0].Address = o.Listen
		src.flags["listeners[0].address"] = FlagListen
	}
	if o.Upstream != "" {
		c.Upstream.URL = o.Upstream
		src.flags["upstream.url"] = FlagUpstream
	}
	if o.DataDir != "" {
		c.Queue.Dir = o.DataDir
		src.flags["queue.dir"] = FlagDataDir
	}
	if o.ClientID != "" {
		c.Upstream.ClientID = o.ClientID
		src.flags["upstream.client_id"] = FlagClientID
	}
	return c.Validate()
}
