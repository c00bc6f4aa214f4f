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
	"strconv"
	"strings"
	"time"

	"holdfast/agent"
	"holdfast/config"
	"holdfast/internal/admin"
	"holdfast/queue"
)

// runQueue runs `holdfast queue stats|peek|export`. It opens the queue
// directory without creating it and only reads: peek and export go through
// queue.Scan, which leases, expires and drops nothing. While the agent runs
// it holds the queue, so stats and peek ask it over the admin endpoint
// instead; export needs the agent stopped.
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
	n := fs.Int("n", 10, "peek: how many messages from the head")
	dead := fs.Bool("dead-letters", false, "export: the dead-letter store instead of the queue")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if sub == "peek" && (*n < 1 || *n > admin.MaxPeek) {
		return usagef("queue peek: -n %d: want 1 to %d", *n, admin.MaxPeek)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	q, err := queue.Open(queue.Options{
		Dir: cfg.Queue.Dir, NoCreate: true, TTL: cfg.Queue.TTL,
		Logger: slog.New(slog.DiscardHandler),
	})
	switch {
	case errors.Is(err, queue.ErrNoQueue):
		return fmt.Errorf("%w (holdfast has not run with queue.dir %s yet, or the directory is mistyped)", err, cfg.Queue.Dir)
	case err != nil && errors.Is(err, queue.ErrLocked) && sub != "export":
		return askAgent(sub, *adminFlag, cfg, *n, stdout, stderr, err)
	case errors.Is(err, queue.ErrLocked):
		return fmt.Errorf("queue %s is in use by a running holdfast: stop it to export the queue (stats and peek ask the running agent)", cfg.Queue.Dir)
	case err != nil:
		return err
	}
	defer q.Close()

	switch sub {
	case "stats":
		s := q.Stats()
		fmt.Fprintf(stdout, "messages: %d\nbytes: %d\noldest_age: %s\ndead_letters: %d\nnext_seq: %d\n",
			s.Messages, s.Bytes, s.OldestAge.Round(time.Second), s.DeadLetters, s.NextSeq)
		return nil
	case "peek":
		return writeRecords(stdout, stderr, func(fn func(agent.QueueRecord) error) error {
			return agent.ScanQueue(q, *n, fn)
		})
	default: // export
		if *dead {
			enc := json.NewEncoder(stdout)
			return q.DeadLetters(func(d queue.DeadLetter) error {
				r := agent.RecordOf(d.Seq, &d.Message)
				r.DeadLetter, r.DeadLetterAt = d.Reason, d.At
				return enc.Encode(r)
			})
		}
		return writeRecords(stdout, stderr, func(fn func(agent.QueueRecord) error) error {
			return agent.ScanQueue(q, -1, fn)
		})
	}
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

// askAgent answers stats or peek from the running agent that holds the
// queue; openErr is why the queue could not be opened.
func askAgent(sub, adminFlag string, cfg *config.Config, n int, stdout, stderr io.Writer, openErr error) error {
	addr := adminFlag
	if addr == "" {
		addr = cfg.Admin.Address
	}
	if addr == "" {
		return fmt.Errorf("queue %s is in use by a running holdfast and admin.address is empty: cannot ask it (%v)", cfg.Queue.Dir, openErr)
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
		b := st.Backlog
		fmt.Fprintf(stdout, "messages: %d\nbytes: %d\noldest_age: %s\ndead_letters: %d\n",
			b.Messages, b.Bytes, roundDuration(b.OldestAgeSeconds), b.DeadLetters)
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
