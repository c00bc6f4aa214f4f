package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"holdfast/agent"
)

func runStatus(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, false)
	asJSON := fs.Bool("json", false, "print the raw JSON of /api/status")
	adminFlag := fs.String("admin", "", "admin endpoint address (default: from the configuration)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *adminFlag != "" && cf.config != "" {
		return usagef("status: --admin and --config: give one (the configuration is read only for its admin.address)")
	}
	addr, err := adminAddress(*adminFlag, &cf)
	if err != nil {
		return err
	}
	body, err := fetchStatus(addr)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st agent.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status from %s: %w", addr, err)
	}
	renderStatus(stdout, &st)
	return nil
}

// fetchStatus asks the running agent for its status.
func fetchStatus(addr string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/api/status")
	if err != nil {
		return nil, fmt.Errorf("is holdfast running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("status from %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: %s", addr, resp.Status)
	}
	return body, nil
}

func renderStatus(w io.Writer, st *agent.Status) {
	fmt.Fprintf(w, "holdfast %s, up %s\n", st.Version, roundDuration(st.UptimeSeconds))
	u := st.Upstream
	state := u.State
	if state == "" {
		state = "unknown"
	}
	fmt.Fprintf(w, "upstream:  %s  %s", u.URL, state)
	if !u.Since.IsZero() {
		fmt.Fprintf(w, " since %s", u.Since.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, ", %d in flight, %d forwarded\n", u.InFlight, u.Forwarded)
	if u.LastError != "" {
		fmt.Fprintf(w, "           last error: %s\n", u.LastError)
	}
	b := st.Backlog
	fmt.Fprintf(w, "backlog:   %d messages, %s", b.Messages, humanBytes(b.Bytes))
	if b.Messages > 0 {
		fmt.Fprintf(w, ", oldest %s", roundDuration(b.OldestAgeSeconds))
	}
	if b.DiskFull {
		fmt.Fprint(w, ", DISK RESERVE REACHED: refusing new messages")
	}
	fmt.Fprintln(w)
	r := st.Rates
	fmt.Fprintf(w, "rates:     %.1f/s in, %.1f/s out", r.IngestPerSecond, r.DrainPerSecond)
	if r.DrainETASeconds >= 0 {
		fmt.Fprintf(w, ", empty in about %s", roundDuration(r.DrainETASeconds))
	} else if b.Messages > 0 {
		fmt.Fprint(w, ", not draining")
	}
	fmt.Fprintln(w)
	var dropped uint64
	for _, n := range st.Drops {
		dropped += n
	}
	fmt.Fprintf(w, "dropped:   %d", dropped)
	for _, k := range dropOrder(st.Drops) {
		if n := st.Drops[k]; n > 0 {
			fmt.Fprintf(w, "  %s=%d", k, n)
		}
	}
	fmt.Fprintln(w)
	l := st.Local
	fmt.Fprintf(w, "local:     %d clients, %d sessions, %d queued for them, %d in, %d out\n",
		l.Connections, l.Sessions, l.Queued, l.MessagesIn, l.MessagesOut)
	if b.DeadLetters > 0 {
		fmt.Fprintf(w, "dead letters: %d (holdfast queue export --dead-letters)\n", b.DeadLetters)
	}
	for _, s := range st.Serial {
		state := "not open"
		if s.Connected {
			state = "open"
		}
		fmt.Fprintf(w, "serial:    %s %s %s, %d frames, %d parse errors, %d garbage bytes, %d disconnects, %d open failures\n",
			s.Name, s.Device, state, s.Frames, s.ParseErrors, s.Garbage, s.Disconnects, s.OpenFailures)
	}
}

// dropOrder lists the reasons of drops: the known ones in their order,
// then any other (a newer agent's) sorted by name.
func dropOrder(drops map[string]uint64) []string {
	out := append([]string(nil), agent.DropReasons...)
	var more []string
	for k := range drops {
		if !slices.Contains(agent.DropReasons, k) {
			more = append(more, k)
		}
	}
	sort.Strings(more)
	return append(out, more...)
}

func roundDuration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// redacted hides a password in a URL.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
