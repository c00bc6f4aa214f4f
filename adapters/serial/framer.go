package serial

import "bytes"

// A framer cuts a byte stream into frames. The adapter's read loop owns it;
// it is not safe for concurrent use. The frame passed to emit is only valid
// during the call. A framer never holds more than its maximum frame length
// (plus the length of a delimiter) in memory.
type framer interface {
	// feed consumes bytes read from the port.
	feed(p []byte, emit func(frame []byte))
	// idle reports that no byte arrived for the silence interval.
	idle(emit func(frame []byte))
	// reset forgets a partial frame (the port was lost).
	reset()
	// counts returns and clears the overlong frames and garbage bytes seen
	// since the last call.
	counts() (overlong, garbage uint64)
}

func newFramer(f Framing) framer {
	switch f.Mode {
	case FramingFixed:
		return &fixedFramer{buf: make([]byte, 0, f.Length), n: f.Length}
	case FramingSilence:
		return &silenceFramer{max: f.MaxLength}
	case FramingDelimited:
		start, _ := ParseBytes(f.Start)
		end, _ := ParseBytes(f.End)
		return &delimitedFramer{start: start, end: end, max: f.MaxLength, keep: f.IncludeMarkers}
	default:
		delim, _ := ParseBytes(f.Delimiter)
		return &lineFramer{delim: delim, max: f.MaxLength, stripCR: string(delim) == "\n"}
	}
}

type tally struct{ overlong, garbage uint64 }

func (t *tally) counts() (uint64, uint64) {
	o, g := t.overlong, t.garbage
	t.overlong, t.garbage = 0, 0
	return o, g
}

// lineFramer: frames end with delim. An empty frame (two delimiters in a row)
// is skipped. A frame longer than max is counted once and skipped up to the
// next delimiter.
type lineFramer struct {
	tally
	delim    []byte
	max      int
	stripCR  bool
	buf      []byte // the partial frame (while skipping: at most len(delim)-1 bytes)
	skipping bool
}

func (l *lineFramer) feed(p []byte, emit func([]byte)) {
	data, joined := p, false
	from := 0
	if len(l.buf) > 0 {
		// The delimiter may straddle the previous read.
		from = max(0, len(l.buf)-(len(l.delim)-1))
		data, joined = append(l.buf, p...), true
	}
	start := 0
	for {
		i := bytes.Index(data[from:], l.delim)
		if i < 0 {
			break
		}
		i += from
		l.end(data[start:i], emit)
		start = i + len(l.delim)
		from = start
	}
	rem := data[start:]
	limit := l.max + len(l.delim) - 1
	if l.stripCR {
		limit++ // room for the "\r" that is not part of the frame
	}
	if !l.skipping && len(rem) > limit {
		l.overlong++
		l.skipping = true
	}
	if l.skipping {
		// Keep only what may be the beginning of the next delimiter.
		rem = rem[max(0, len(rem)-(len(l.delim)-1)):]
	}
	if joined {
		l.buf = data[:0] // keep the grown array for the next read
	}
	l.buf = append(l.buf[:0], rem...)
}

func (l *lineFramer) end(frame []byte, emit func([]byte)) {
	if l.skipping {
		l.skipping = false
		return
	}
	if l.stripCR && len(frame) > 0 && frame[len(frame)-1] == '\r' {
		frame = frame[:len(frame)-1]
	}
	switch {
	case len(frame) > l.max:
		l.overlong++
	case len(frame) > 0:
		emit(frame)
	}
}

func (l *lineFramer) idle(func([]byte)) {}
func (l *lineFramer) reset()            { l.buf, l.skipping = l.buf[:0], false }

// fixedFramer: every n bytes are a frame.
type fixedFramer struct {
	tally
	buf []byte
	n   int
}

func (f *fixedFramer) feed(p []byte, emit func([]byte)) {
	for len(p) > 0 {
		take := f.n - len(f.buf)
		if take > len(p) {
			take = len(p)
		}
		if len(f.buf) == 0 && take == f.n {
			emit(p[:take]) // whole frame in p: no copy
		} else {
			f.buf = append(f.buf, p[:take]...)
			if len(f.buf) == f.n {
				emit(f.buf)
				f.buf = f.buf[:0]
			}
		}
		p = p[take:]
	}
}

func (f *fixedFramer) idle(func([]byte)) {}
func (f *fixedFramer) reset()            { f.buf = f.buf[:0] }

// silenceFramer: a frame is what arrived before a quiet interval. More than
// max bytes without a pause is one overlong frame, skipped to the pause.
type silenceFramer struct {
	tally
	buf      []byte
	max      int
	skipping bool
}

func (s *silenceFramer) feed(p []byte, _ func([]byte)) {
	if s.skipping {
		return
	}
	if len(s.buf)+len(p) > s.max {
		s.overlong++
		s.skipping = true
		s.buf = s.buf[:0]
		return
	}
	s.buf = append(s.buf, p...)
}

func (s *silenceFramer) idle(emit func([]byte)) {
	if len(s.buf) > 0 {
		emit(s.buf)
	}
	s.buf, s.skipping = s.buf[:0], false
}

func (s *silenceFramer) reset() { s.buf, s.skipping = s.buf[:0], false }

// delimitedFramer: a frame runs from start to end. Bytes outside a frame are
// garbage. A start marker inside a frame is data (binary frames may contain
// it); a frame longer than max is counted overlong and skipped up to its end
// marker.
type delimitedFramer struct {
	tally
	start, end []byte
	max        int
	keep       bool
	in         bool   // inside a frame (start seen)
	skipping   bool   // inside an overlong frame: buf holds at most len(end)-1 bytes
	buf        []byte // outside: a possible partial start marker; inside: the frame so far
}

func (d *delimitedFramer) feed(p []byte, emit func([]byte)) {
	data, joined := p, false
	scan := 0 // where to look for the end marker
	if len(d.buf) > 0 {
		if d.in {
			scan = max(0, len(d.buf)-(len(d.end)-1))
		}
		data, joined = append(d.buf, p...), true
	}
	pos := 0 // start of what is not consumed yet
	for pos < len(data) {
		if !d.in {
			i := bytes.Index(data[pos:], d.start)
			if i < 0 {
				// Keep a tail that may begin a start marker.
				keep := min(len(d.start)-1, len(data)-pos)
				d.garbage += uint64(len(data) - pos - keep)
				pos = len(data) - keep
				break
			}
			d.garbage += uint64(i)
			pos += i + len(d.start)
			scan = pos
			d.in = true
			continue
		}
		i := bytes.Index(data[scan:], d.end)
		if i < 0 {
			if !d.skipping && len(data)-pos > d.max+len(d.end)-1 {
				d.overlong++
				d.skipping = true
			}
			if d.skipping {
				// Keep only what may begin the end marker.
				pos = max(pos, len(data)-(len(d.end)-1))
			}
			break
		}
		i += scan
		frame := data[pos:i]
		switch {
		case d.skipping:
			d.skipping = false
		case len(frame) > d.max:
			d.overlong++
		case len(frame) == 0 && !d.keep:
			// Nothing between the markers.
		case d.keep:
			out := make([]byte, 0, len(d.start)+len(frame)+len(d.end))
			out = append(append(append(out, d.start...), frame...), d.end...)
			emit(out)
		default:
			emit(frame)
		}
		d.in = false
		pos = i + len(d.end)
	}
	if joined {
		d.buf = data[:0] // keep the grown array for the next read
	}
	d.buf = append(d.buf[:0], data[pos:]...)
}

func (d *delimitedFramer) idle(func([]byte)) {}
func (d *delimitedFramer) reset()            { d.in, d.skipping, d.buf = false, false, d.buf[:0] }
