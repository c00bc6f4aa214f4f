package config

import (
	"fmt"
	"strings"

	"holdfast/internal/topic"
)

// Template placeholders. Which ones a template may use depends on its key;
// see the key's documentation.
const (
	VarTopic     = "topic"      // the message's topic, after strip_prefix
	VarClientID  = "client_id"  // a client id (see the key)
	VarGatewayID = "gateway_id" // the gateway id
)

type varID uint8

const (
	varNone varID = iota
	varTopic
	varClientID
	varGatewayID
)

var varNames = [...]string{varTopic: VarTopic, varClientID: VarClientID, varGatewayID: VarGatewayID}

type part struct {
	lit string
	v   varID // varNone: a literal
}

// Template is a topic or filter with placeholders such as {topic},
// {client_id} and {gateway_id}, parsed once so that expanding it does not
// parse or search. A "{" must open a known placeholder; "}" alone is a
// literal. The zero Template is empty and expands to "".
type Template struct {
	raw   string
	parts []part
}

// ParseTemplate parses s, failing on an unterminated or unknown placeholder.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("unterminated placeholder in %q", s)
		}
		name := rest[i+1 : i+j]
		v := varNone
		for id, n := range varNames {
			if n != "" && n == name {
				v = varID(id)
			}
		}
		if v == varNone {
			return Template{}, fmt.Errorf("unknown placeholder {%s} in %q (use {topic}, {client_id} or {gateway_id})", name, s)
		}
		t.parts = append(t.parts, part{v: v})
		rest = rest[i+j+1:]
	}
	return t, nil
}

func mustTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// IsZero reports whether the template is empty.
func (t Template) IsZero() bool { return t.raw == "" }

// Uses reports whether the template contains the placeholder name ("topic",
// "client_id" or "gateway_id").
func (t Template) Uses(name string) bool {
	for _, p := range t.parts {
		if p.v != varNone && varNames[p.v] == name {
			return true
		}
	}
	return false
}

// literal reports the template's text with placeholders removed, for
// validating the characters it contributes.
func (t Template) literal() string {
	var b strings.Builder
	for _, p := range t.parts {
		b.WriteString(p.lit)
	}
	return b.String()
}

// Expand returns the template with its placeholders replaced. A template
// that is exactly "{topic}" returns topic itself without allocating; any
// other costs one allocation.
func (t Template) Expand(topic, clientID, gatewayID string) string {
	if len(t.parts) == 1 {
		return t.parts[0].value(topic, clientID, gatewayID)
	}
	n := 0
	for _, p := range t.parts {
		n += len(p.value(topic, clientID, gatewayID))
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range t.parts {
		b.WriteString(p.value(topic, clientID, gatewayID))
	}
	return b.String()
}

func (p part) value(topic, clientID, gatewayID string) string {
	switch p.v {
	case varTopic:
		return topic
	case varClientID:
		return clientID
	case varGatewayID:
		return gatewayID
	}
	return p.lit
}

// stripPrefix removes the expanded prefix template from topic when topic
// starts with it and is longer, so a topic never becomes empty. It compares
// part by part and does not allocate.
func stripPrefix(topic string, prefix Template, clientID, gatewayID string) string {
	rest := topic
	for _, p := range prefix.parts {
		v := p.value("", clientID, gatewayID)
		if !strings.HasPrefix(rest, v) {
			return topic
		}
		rest = rest[len(v):]
	}
	if rest == "" {
		return topic
	}
	return rest
}

// UpstreamTopic returns the upstream topic for a message published locally
// on topic by clientID: StripPrefix (expanded) removed, then Topic expanded.
func (r ForwardRule) UpstreamTopic(topic, clientID, gatewayID string) string {
	return r.Topic.Expand(stripPrefix(topic, r.StripPrefix, clientID, gatewayID), clientID, gatewayID)
}

// CheckedUpstreamTopic is UpstreamTopic with the checks an upstream broker
// applies: it returns an error (wrapping topic.ErrInvalidName) when the
// expanded topic is not a valid topic name (empty, over 65535 bytes, not
// UTF-8, with U+0000, + or #), which a device's client id or topic levels
// can make it. It also refuses a topic that begins with "$" when the "$"
// comes from the device (its client id, or a level that strip_prefix
// exposed): brokers keep "$" topics for themselves. A "$" the rule puts
// there is kept: a topic template that starts with "$" (AWS IoT's
// "$aws/..."), or a "$" local topic that a "$" filter selected, forwarded
// as it is.
func (r ForwardRule) CheckedUpstreamTopic(local, clientID, gatewayID string) (string, error) {
	stripped := stripPrefix(local, r.StripPrefix, clientID, gatewayID)
	up := r.Topic.Expand(stripped, clientID, gatewayID)
	if err := topic.ValidName(up); err != nil {
		return up, err
	}
	if up[0] == '$' && !r.ruleDollar(local, stripped) {
		return up, fmt.Errorf("%w: %q begins with $, which brokers keep for their own topics, and the $ comes from the publishing device", topic.ErrInvalidName, up)
	}
	return up, nil
}

// ruleDollar reports whether the "$" that starts an upstream topic was put
// there by the rule rather than by the device.
func (r ForwardRule) ruleDollar(local, stripped string) bool {
	if len(r.Topic.parts) == 0 {
		return false
	}
	switch p := r.Topic.parts[0]; p.v {
	case varNone:
		return strings.HasPrefix(p.lit, "$")
	case varGatewayID:
		return true
	case varTopic:
		// Only a filter that names the "$" level selects a "$" topic.
		return stripped == local
	}
	return false
}

// UpstreamQoS returns the QoS a message published locally at qos is
// forwarded with: qos raised to MinQoS and lowered to MaxQoS.
func (r ForwardRule) UpstreamQoS(qos int) int {
	return min(max(qos, r.MinQoS), r.MaxQoS)
}

// Subscription returns the upstream filter to subscribe to: Filter with
// {gateway_id} and {client_id} (the upstream client id) expanded.
func (r DownlinkRule) Subscription(clientID, gatewayID string) string {
	return r.Filter.Expand("", clientID, gatewayID)
}

// LocalTopicFor returns the local topic for a message that arrived from
// upstream on topic: StripPrefix removed, then LocalTopic expanded.
func (r DownlinkRule) LocalTopicFor(topic, gatewayID string) string {
	return r.LocalTopic.Expand(stripPrefix(topic, r.StripPrefix, "", gatewayID), "", gatewayID)
}
