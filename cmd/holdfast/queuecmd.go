package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"holdfast/agent"
	"holdfast/config"
	"holdfast/internal/admin"
	"holdfast/queue"
)

// runQueue runs `holdfast queue stats|peek|export`. It opens the queue
// directory read-only (queue.Options.ReadOnly): nothing in it is written,
// so the files keep their owner when root reads the service user's queue.
// peek and export go through queue.Scan, which leases, expires and drops
// nothing. While the agent runs it holds the queue, so stats and peek ask
// it over the admin endpoint instead; export needs the agent stopped.
//
// A queue that was not closed cleanly (the agent crashed or was killed)
// needs a read-write open to recover: done here when this process runs as
// the directory's owner (what `holdfast run` would do), refused otherwise.
// A directory this user may not read is an error, after stats and peek
// have tried the running agent.
func runQueue(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return errHelp
		}
		return usagef("queue: want stats, peek or export")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "stats", "peek", "export":
	default:
		return usagef("queue: unknown subcommand %q (want stats, peek or export)", sub)
	}
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, false)
	fs.StringVar(&cf.overrides.DataDir, "data-dir", "", "queue directory (default: from the configuration)")
	adminFlag := fs.String("admin", "", "admin endpoint of a running agent (stats, peek)")
	n := fs.Int("n", admin.DefaultPeek, "peek: how many messages from the head")
	dead := fs.Bool("dead-letters", false, "export: the dead-letter store instead of the queue")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The flags a subcommand does not use, and the ones they are for.
	if err := onlyFor(fs, map[string]map[string]string{
		"stats":  {"n": "queue peek", "dead-letters": "queue export"},
		"peek":   {"dead-letters": "queue export"},
		"export": {"n": "queue peek", "admin": "queue stats and queue peek: export reads the directory, never the agent"},
	}[sub]); err != nil {
		return err
	}
	if sub == "peek" && (*n < 1 || *n > admin.MaxPeek) {
		return usagef("queue peek: -n %d: want 1 to %d", *n, admin.MaxPeek)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	q, err := openQueue(cfg, sub)
	switch {
	case err == nil:
	case errors.Is(err, queue.ErrNoQueue):
		return fmt.Errorf("%w (holdfast has not run with queue.dir %s yet, or the directory is mistyped)", err, cfg.Queue.Dir)
	case errors.Is(err, queue.ErrLocked) && sub != "export":
		if aerr := askAgent(sub, *adminFlag, cfg, *n, stdout, stderr); aerr != nil {
			return fmt.Errorf("queue %s is in use by another process, and asking the agent failed: %w", cfg.Queue.Dir, aerr)
		}
		return nil
	case errors.Is(err, queue.ErrLocked):
		return fmt.Errorf("queue %s is in use by a running holdfast: stop it to export the queue (stats and peek ask the running agent)", cfg.Queue.Dir)
	case errors.Is(err, os.ErrPermission) && sub != "export":
		if aerr := askAgent(sub, *adminFlag, cfg, *n, stdout, stderr); aerr != nil {
			return fmt.Errorf("%w (run this as the queue's owner or as root); asking a running agent failed too: %v", err, aerr)
		}
		return nil
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (run this as the queue's owner or as root)", err)
	default:
		return err
	}
	defer q.Close()

	switch {
	case sub == "stats":
		writeStats(stdout, agent.BacklogOf(q.Stats()))
		return nil
	case *dead: // export only: onlyFor refuses it to the others
		return writeRecords(stdout, stderr, func(fn func(agent.QueueRecord) error) error {
			return q.DeadLetters(func(d queue.DeadLetter) error {
				r := agent.RecordOf(d.Seq, &d.Message)
				r.DeadLetter, r.DeadLetterAt = d.Reason, d.At
				return fn(r)
			})
		})
	}
	limit := *n // peek
	if sub == "export" {
		limit = -1 // every record
	}
	return writeRecords(stdout, stderr, func(fn func(agent.QueueRecord) error) error {
		return agent.ScanQueue(q, limit, fn)
	})
}

// openQueue opens the queue of cfg read-only for `holdfast queue sub`.
// A queue that needs recovery is opened read-write, as `holdfast run` would,
// if this process runs as the owner of the directory; otherwise that is
// refused, since a read-write open by root leaves files the service user
// cannot open.
func openQueue(cfg *config.Config, sub string) (*queue.Queue, error) {
	opts := queue.Options{
		Dir: cfg.Queue.Dir, ReadOnly: true, TTL: cfg.Queue.TTL,
		Logger: slog.New(slog.DiscardHandler),
	}
	q, err := queue.Open(opts)
	if !errors.Is(err, queue.ErrNeedsRecovery) {
		return q, err
	}
	if _, mine := dirOwner(cfg.Queue.Dir); !mine {
		return nil, fmt.Errorf("queue %s was not closed cleanly (holdfast crashed or was killed), and recovering it writes to it: "+
			"%s, or start holdfast once", cfg.Queue.Dir, runAsOwner(cfg.Queue.Dir, sub))
	}
	opts.ReadOnly, opts.NoCreate = false, true
	return queue.Open(opts)
}

// runAsOwner says how to run `holdfast queue sub` as the owner of dir.
func runAsOwner(dir, sub string) string {
	if owner, _ := dirOwner(dir); owner != "" {
		return fmt.Sprintf("run this as its owner: sudo -u %s holdfast queue %s ...", owner, sub)
	}
	return "run this as the owner of " + dir
}

// onlyFor refuses the flags set on fs that its command does not use:
// where maps each to the commands it is for. A flag that does nothing is a
// mistake to report, not to ignore.
func onlyFor(fs *flag.FlagSet, where map[string]string) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if w, ok := where[f.Name]; ok && err == nil {
			err = usagef("%s: %s is for %s", fs.Name(), flagName(f.Name), w)
		}
	})
	return err
}

// flagName is how a flag is written: -n, --data-dir.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// writeStats prints the backlog as `holdfast queue stats` shows it, the
// same from the queue directory and from the running agent.
func writeStats(w io.Writer, b agent.BacklogStatus) {
	fmt.Fprintf(w, "messages: %d\nbytes: %d\noldest_age: %s\ndead_letters: %d\nnext_seq: %d\n",
		b.Messages, b.Bytes, roundDuration(b.OldestAgeSeconds), b.DeadLetters, b.NextSeq)
}

// writeRecords writes the records scan produces as JSON lines to w; corrupt
// ones go to stderr instead, one line each, and make the command fail once
// every other record is out.
func writeRecords(w, stderr io.Writer, scan func(func(agent.QueueRecord) error) error) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	corrupt := 0
	err := scan(func(r agent.QueueRecord) error {
		if r.Corrupt != "" {
			corrupt++
			fmt.Fprintf(stderr, "holdfast: queue: record %d is corrupt (the agent drops it at the head): %s\n", r.Seq, r.Corrupt)
			return nil
		}
		return enc.Encode(r)
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err == nil && corrupt > 0 {
		err = fmt.Errorf("queue: %d corrupt record(s), shown above", corrupt)
	}
	return err
}

// askAgent answers stats or peek from the running agent, at --admin or
// the configuration's admin.address.
func askAgent(sub, adminFlag string, cfg *config.Config, n int, stdout, stderr io.Writer) error {
	addr := adminFlag
	if addr == "" {
		addr = cfg.Admin.Address
	}
	if addr == "" {
		return errors.New("admin.address is empty: no admin endpoint to ask")
	}
	if sub == "stats" {
		body, err := fetchStatus(addr)
		if err != nil {
			return err
		}
		var st agent.Status
		if err := json.Unmarshal(body, &st); err != nil {
			return fmt.Errorf("status from %s: %w", addr, err)
		}
		writeStats(stdout, st.Backlog)
		return nil
	}
	return writeRecords(stdout, stderr, func(fn func(agent.QueueRecord) error) error {
		return fetchPeek(addr, n, fn)
	})
}

// fetchPeek reads /api/queue/peek?n=N of the running agent at addr.
func fetchPeek(addr string, n int, fn func(agent.QueueRecord) error) error {
	c := &http.Client{Timeout: 30 * time.Second}
	u := url.URL{Scheme: "http", Host: addr, Path: "/api/queue/peek", RawQuery: "n=" + strconv.Itoa(n)}
	resp, err := c.Get(u.String())
	if err != nil {
		return fmt.Errorf("is holdfast running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("peek from %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			agent.QueueRecord
			Error string `json:"error"`
		}
		if err := dec.Decode(&line); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("peek from %s: %w", addr, err)
		}
		if line.Error != "" {
			return fmt.Errorf("peek from %s: %s", addr, line.Error)
		}
		if err := fn(line.QueueRecord); err != nil {
			return err
		}
	}
}
