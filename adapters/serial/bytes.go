package serial

import (
	"encoding/hex"
	"fmt"
	"strings"

	"go.bug.st/serial"
)

// ParseBytes turns a configured byte string into bytes. Two forms:
//
//   - "hex:" followed by hexadecimal digits, spaces allowed between bytes:
//     "hex:0d0a", "hex:01 03 00 00 00 02 c4 0b";
//   - anything else is taken literally, with backslash escapes \r \n \t \0
//     \\ and \xHH (exactly two hex digits).
//
// YAML double-quoted strings already turn "\r\n" into CR LF before this sees
// them; single-quoted and plain strings leave the backslashes for this to
// read. Beware that YAML's own "\xHH" in double quotes makes a Unicode
// character, so "\xff" becomes the two bytes C3 BF: write bytes at or above
// 0x80 as 'single-quoted \xff' or in the hex: form.
func ParseBytes(s string) ([]byte, error) {
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		h = strings.Join(strings.Fields(h), "")
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%q: bad hexadecimal: %v", s, err)
		}
		return b, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("%q: backslash at the end (write \\\\ for a backslash)", s)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("%q: \\x needs two hexadecimal digits", s)
			}
			b, err := hex.DecodeString(s[i+1 : i+3])
			if err != nil {
				return nil, fmt.Errorf("%q: \\x needs two hexadecimal digits", s)
			}
			out = append(out, b[0])
			i += 2
		default:
			return nil, fmt.Errorf("%q: unknown escape \\%c (known: \\r \\n \\t \\0 \\\\ \\xHH)", s, s[i])
		}
	}
	return out, nil
}

func parseParity(s string) (serial.Parity, error) {
	switch s {
	case ParityNone:
		return serial.NoParity, nil
	case ParityOdd:
		return serial.OddParity, nil
	case ParityEven:
		return serial.EvenParity, nil
	case ParityMark:
		return serial.MarkParity, nil
	case ParitySpace:
		return serial.SpaceParity, nil
	}
	return 0, fmt.Errorf("%q: must be none, odd, even, mark or space", s)
}

func parseStopBits(s string) (serial.StopBits, error) {
	switch s {
	case "1":
		return serial.OneStopBit, nil
	case "1.5":
		return serial.OnePointFiveStopBits, nil
	case "2":
		return serial.TwoStopBits, nil
	}
	return 0, fmt.Errorf("%q: must be 1, 1.5 or 2", s)
}

// lineSettingError says why the serial driver of goos cannot set parity or
// stop bits, naming the key, or returns "" when it can: the library sets 1.5
// stop bits only on Windows, and mark and space parity (CMSPAR) only on Linux
// and Windows. Refusing them when the config is checked is better than a
// port that fails every open.
func lineSettingError(goos, parity, stopBits string) (key, msg string) {
	if stopBits == "1.5" && goos != "windows" {
		return "stop_bits", fmt.Sprintf("%q: supported on Windows only, not on %s", stopBits, goos)
	}
	if (parity == ParityMark || parity == ParitySpace) && goos != "linux" && goos != "windows" {
		return "parity", fmt.Sprintf("%q: supported on Linux and Windows only, not on %s", parity, goos)
	}
	return "", ""
}
