package serial

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode/utf8"
)

// A codec turns frames into payloads (and the fields their topic may use).
// It is built once per port from a validated config; encode is not safe for
// concurrent use.
type codec struct {
	format    string
	parse     string
	re        *regexp.Regexp
	reNames   []string
	columns   []string
	sep       rune
	numbers   map[string]bool
	timestamp string
	tsField   string
	needRec   bool // the topic template uses frame fields
}

func newCodec(c *PortConfig, needFields bool) (*codec, error) {
	p := c.Payload
	k := &codec{format: p.Format, parse: p.Parse, timestamp: p.Timestamp, tsField: p.TimestampField, needRec: needFields}
	switch p.Parse {
	case ParseRegex:
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			return nil, fieldErr("payload.regex", "%v", err)
		}
		k.re, k.reNames = re, re.SubexpNames()
	case ParseCSV:
		k.columns = p.Columns
		k.sep = []rune(p.Separator)[0]
	}
	if len(p.Numbers) > 0 {
		k.numbers = map[string]bool{}
		for _, n := range p.Numbers {
			k.numbers[n] = true
		}
	}
	return k, nil
}

// encode appends the payload for frame to dst. rec holds the frame's fields
// when they were parsed or needed by the topic (nil otherwise). An error is
// a parse error: the frame goes to on_error.
func (k *codec) encode(dst, frame []byte, at time.Time) (payload []byte, rec record, err error) {
	switch k.format {
	case FormatRaw:
		return append(dst, frame...), nil, nil
	case FormatText:
		if !utf8.Valid(frame) {
			return nil, nil, errors.New("text: frame is not valid UTF-8")
		}
		if k.timestamp == "" {
			return append(dst, frame...), nil, nil
		}
		return k.wrap(dst, string(frame), at), nil, nil
	case FormatHex:
		if k.timestamp == "" {
			return hex.AppendEncode(dst, frame), nil, nil
		}
		return k.wrap(dst, hex.EncodeToString(frame), at), nil, nil
	case FormatBase64:
		if k.timestamp == "" {
			return base64.StdEncoding.AppendEncode(dst, frame), nil, nil
		}
		return k.wrap(dst, base64.StdEncoding.EncodeToString(frame), at), nil, nil
	}
	// json
	switch k.parse {
	case ParseRegex:
		rec, err = k.parseRegex(frame)
	case ParseCSV:
		rec, err = k.parseCSV(frame)
	case ParseNMEA:
		rec, err = parseNMEA(frame)
	default:
		return k.passJSON(dst, frame, at)
	}
	if err != nil {
		return nil, nil, err
	}
	if k.timestamp != "" {
		rec = append(rec, field{k.tsField, k.stamp(at)})
	}
	return rec.appendJSON(dst), rec, nil
}

func (k *codec) stamp(at time.Time) any {
	if k.timestamp == TimestampUnixMS {
		return at.UnixMilli()
	}
	return at.UTC().Format(time.RFC3339Nano)
}

// wrap makes {"data": s, <ts>: time}.
func (k *codec) wrap(dst []byte, s string, at time.Time) []byte {
	return record{{"data", s}, {k.tsField, k.stamp(at)}}.appendJSON(dst)
}

func (k *codec) typed(key, s string) (any, error) {
	if !k.numbers[key] {
		return s, nil
	}
	v, err := parseNumber(s)
	if err != nil {
		return nil, fmt.Errorf("field %s: %q is not a number", key, s)
	}
	return v, nil
}

func (k *codec) parseRegex(frame []byte) (record, error) {
	m := k.re.FindSubmatchIndex(frame)
	if m == nil {
		return nil, errors.New("regex: frame does not match")
	}
	rec := make(record, 0, len(k.reNames))
	for i, name := range k.reNames {
		if name == "" {
			continue
		}
		if m[2*i] < 0 {
			rec = append(rec, field{name, nil}) // optional group that took no part
			continue
		}
		v, err := k.typed(name, string(frame[m[2*i]:m[2*i+1]]))
		if err != nil {
			return nil, fmt.Errorf("regex: %w", err)
		}
		rec = append(rec, field{name, v})
	}
	return rec, nil
}

func (k *codec) parseCSV(frame []byte) (record, error) {
	r := csv.NewReader(bytes.NewReader(frame))
	r.Comma = k.sep
	r.FieldsPerRecord = len(k.columns)
	cols, err := r.Read()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("csv: empty frame")
		}
		return nil, fmt.Errorf("csv: %w", err)
	}
	if _, err := r.Read(); err != io.EOF {
		return nil, errors.New("csv: more than one record in the frame")
	}
	rec := make(record, 0, len(cols))
	for i, name := range k.columns {
		if name == "" || name == "_" {
			continue
		}
		v, err := k.typed(name, cols[i])
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		rec = append(rec, field{name, v})
	}
	return rec, nil
}

// passJSON publishes a frame that is itself a JSON object, adding the
// timestamp as its first field.
func (k *codec) passJSON(dst, frame []byte, at time.Time) ([]byte, record, error) {
	trimmed := bytes.TrimSpace(frame)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, nil, errors.New("json: frame is not a JSON object")
	}
	var rec record
	if k.needRec {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &m); err != nil {
			return nil, nil, fmt.Errorf("json: %w", err)
		}
		for key, raw := range m {
			var v any
			switch {
			case len(raw) > 0 && raw[0] == '"':
				var s string
				if json.Unmarshal(raw, &s) == nil {
					v = s
				}
			case string(raw) == "true" || string(raw) == "false":
				v = string(raw) == "true"
			default:
				if n, err := parseNumber(string(raw)); err == nil {
					v = n
				}
			}
			rec = append(rec, field{key, v})
		}
	}
	if k.timestamp == "" {
		return append(dst, trimmed...), rec, nil
	}
	dst = append(dst, '{')
	dst = appendJSONString(dst, k.tsField)
	dst = append(dst, ':')
	dst = appendJSONValue(dst, k.stamp(at))
	inner := bytes.TrimSpace(trimmed[1:])
	if inner[0] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, inner...), rec, nil
}

// decodeWrite decodes a write-back payload into the bytes for the port.
func decodeWrite(format string, payload, suffix []byte) ([]byte, error) {
	var out []byte
	switch format {
	case WriteHex:
		b, err := hex.DecodeString(string(bytes.TrimSpace(payload)))
		if err != nil {
			return nil, fmt.Errorf("write: payload is not hexadecimal: %w", err)
		}
		out = b
	case WriteBase64:
		b, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(payload)))
		if err != nil {
			return nil, fmt.Errorf("write: payload is not base64: %w", err)
		}
		out = b
	default:
		out = append([]byte(nil), payload...)
	}
	return append(out, suffix...), nil
}
