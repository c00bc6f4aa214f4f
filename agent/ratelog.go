package agent

import (
	"log/slog"
	"sync"
	"time"
)

// logEvery is how often a repeated problem is logged at most.
const logEvery = time.Minute

// rateLog logs a repeated problem at most once per logEvery: the first
// occurrence at once, later ones with the count of those not logged since.
type rateLog struct {
	mu         sync.Mutex
	next       time.Time
	suppressed uint64
}

// log logs msg with args at warning level unless one was logged less than
// logEvery before now, in which case it only counts it.
func (r *rateLog) log(l *slog.Logger, now time.Time, msg string, args ...any) {
	r.mu.Lock()
	if now.Before(r.next) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.suppressed, r.next = 0, now.Add(logEvery)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "not_logged_since_last", n)
	}
	l.Warn(msg, args...)
}
