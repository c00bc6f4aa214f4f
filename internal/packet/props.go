package packet

// Property identifiers (MQTT 5.0 section 2.2.2.2).
const (
	propPayloadFormat        = 0x01
	propMessageExpiry        = 0x02
	propContentType          = 0x03
	propResponseTopic        = 0x08
	propCorrelationData      = 0x09
	propSubscriptionID       = 0x0B
	propSessionExpiry        = 0x11
	propAssignedClientID     = 0x12
	propServerKeepAlive      = 0x13
	propAuthMethod           = 0x15
	propAuthData             = 0x16
	propRequestProblemInfo   = 0x17
	propWillDelay            = 0x18
	propRequestResponseInfo  = 0x19
	propResponseInfo         = 0x1A
	propServerReference      = 0x1C
	propReasonString         = 0x1F
	propReceiveMaximum       = 0x21
	propTopicAliasMaximum    = 0x22
	propTopicAlias           = 0x23
	propMaximumQoS           = 0x24
	propRetainAvailable      = 0x25
	propUserProperty         = 0x26
	propMaximumPacketSize    = 0x27
	propWildcardSubAvailable = 0x28
	propSubIDAvailable       = 0x29
	propSharedSubAvailable   = 0x2A
)

// propSet is a set of property identifiers, one bit per identifier.
type propSet uint64

func set(ids ...byte) propSet {
	var s propSet
	for _, id := range ids {
		s |= 1 << id
	}
	return s
}

func (s propSet) has(id byte) bool { return id < 64 && s&(1<<id) != 0 }

// Which properties each packet may carry (MQTT 5.0 section 2.2.2.2, table 2-4).
var (
	connectProps = set(propSessionExpiry, propAuthMethod, propAuthData, propRequestProblemInfo,
		propRequestResponseInfo, propReceiveMaximum, propTopicAliasMaximum, propUserProperty,
		propMaximumPacketSize)
	willProps = set(propPayloadFormat, propMessageExpiry, propContentType, propResponseTopic,
		propCorrelationData, propWillDelay, propUserProperty)
	connackProps = set(propSessionExpiry, propAssignedClientID, propServerKeepAlive, propAuthMethod,
		propAuthData, propResponseInfo, propServerReference, propReasonString, propReceiveMaximum,
		propTopicAliasMaximum, propMaximumQoS, propRetainAvailable, propUserProperty,
		propMaximumPacketSize, propWildcardSubAvailable, propSubIDAvailable, propSharedSubAvailable)
	publishProps = set(propPayloadFormat, propMessageExpiry, propContentType, propResponseTopic,
		propCorrelationData, propSubscriptionID, propTopicAlias, propUserProperty)
	ackProps         = set(propReasonString, propUserProperty) // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	subscribeProps   = set(propSubscriptionID, propUserProperty)
	unsubscribeProps = set(propUserProperty)
	disconnectProps  = set(propSessionExpiry, propServerReference, propReasonString, propUserProperty)
	authProps        = set(propAuthMethod, propAuthData, propReasonString, propUserProperty)
)

// properties reads a property length and the properties after it into p,
// allowing only the identifiers in allowed. what names the property block in
// errors when it is not the packet's own ("will").
func (d *decoder) properties(p *Properties, allowed propSet, what string) {
	n := d.varint("property length")
	if d.err != nil {
		return
	}
	if n > d.remaining() {
		d.fail(MalformedPacket, "property length %d exceeds the packet", n)
		return
	}
	end := d.off + n
	sub := decoder{b: d.b[:end], off: d.off, pkt: d.pkt}
	if what != "" {
		sub.pkt += " " + what
	}
	var seen propSet
	for sub.err == nil && sub.off < end {
		id := sub.varint("property identifier")
		if sub.err != nil {
			break
		}
		if id >= 64 || !allowed.has(byte(id)) {
			sub.fail(MalformedPacket, "property 0x%02X is not allowed here", id)
			break
		}
		if id != propUserProperty && id != propSubscriptionID && seen.has(byte(id)) {
			sub.fail(ProtocolError, "property 0x%02X included more than once", id)
			break
		}
		seen |= 1 << id
		sub.property(p, byte(id))
	}
	if sub.err == nil {
		sub.check(checkProperties(p))
	}
	if sub.err != nil {
		d.err = sub.err
		return
	}
	d.off = end
}

// property reads the value of one property. The rules on values are
// checked once all are read (checkProperties).
func (d *decoder) property(p *Properties, id byte) {
	switch id {
	case propPayloadFormat:
		p.PayloadFormat, p.HasPayloadFormat = d.byte("payload format indicator"), true
	case propMessageExpiry:
		p.MessageExpiry, p.HasMessageExpiry = d.uint32("property"), true
	case propContentType:
		p.ContentType, p.HasContentType = d.string("content type"), true
	case propResponseTopic:
		p.ResponseTopic, p.HasResponseTopic = d.string("response topic"), true
	case propCorrelationData:
		p.CorrelationData, p.HasCorrelationData = d.binary("correlation data"), true
	case propSubscriptionID:
		v := d.varint("subscription identifier")
		p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, uint32(v))
	case propSessionExpiry:
		p.SessionExpiry, p.HasSessionExpiry = d.uint32("property"), true
	case propAssignedClientID:
		p.AssignedClientID, p.HasAssignedClientID = d.string("assigned client identifier"), true
	case propServerKeepAlive:
		p.ServerKeepAlive, p.HasServerKeepAlive = d.uint16("property"), true
	case propAuthMethod:
		p.AuthMethod, p.HasAuthMethod = d.string("authentication method"), true
	case propAuthData:
		p.AuthData, p.HasAuthData = d.binary("authentication data"), true
	case propRequestProblemInfo:
		p.RequestProblemInfo, p.HasRequestProblemInfo = d.byte("request problem information"), true
	case propWillDelay:
		p.WillDelay, p.HasWillDelay = d.uint32("property"), true
	case propRequestResponseInfo:
		p.RequestResponseInfo, p.HasRequestResponseInfo = d.byte("request response information"), true
	case propResponseInfo:
		p.ResponseInfo, p.HasResponseInfo = d.string("response information"), true
	case propServerReference:
		p.ServerReference, p.HasServerReference = d.string("server reference"), true
	case propReasonString:
		p.ReasonString, p.HasReasonString = d.string("reason string"), true
	case propReceiveMaximum:
		p.ReceiveMaximum, p.HasReceiveMaximum = d.uint16("property"), true
	case propTopicAliasMaximum:
		p.TopicAliasMaximum, p.HasTopicAliasMaximum = d.uint16("property"), true
	case propTopicAlias:
		p.TopicAlias, p.HasTopicAlias = d.uint16("property"), true
	case propMaximumQoS:
		p.MaximumQoS, p.HasMaximumQoS = d.byte("maximum QoS"), true
	case propRetainAvailable:
		p.RetainAvailable, p.HasRetainAvailable = d.byte("retain available"), true
	case propUserProperty:
		k := d.string("user property name")
		v := d.string("user property value")
		p.UserProperties = append(p.UserProperties, UserProperty{Key: k, Value: v})
	case propMaximumPacketSize:
		p.MaximumPacketSize, p.HasMaximumPacketSize = d.uint32("property"), true
	case propWildcardSubAvailable:
		p.WildcardSubAvailable, p.HasWildcardSubAvailable = d.byte("wildcard subscription available"), true
	case propSubIDAvailable:
		p.SubIDAvailable, p.HasSubIDAvailable = d.byte("subscription identifiers available"), true
	case propSharedSubAvailable:
		p.SharedSubAvailable, p.HasSharedSubAvailable = d.byte("shared subscription available"), true
	}
}

// propsLen is the encoded length of p's properties, without the property
// length in front of them. It fails, as the decoder would, on a property that
// allowed does not hold, a string that is not a valid UTF-8 Encoded String,
// a value that cannot be encoded or that checkProperties refuses. what names
// the property block in errors.
func propsLen(p *Properties, allowed propSet, what string) (int, *Error) {
	m := propMeasure{allowed: allowed}
	m.fixed(p.HasPayloadFormat, propPayloadFormat, 1)
	m.fixed(p.HasMessageExpiry, propMessageExpiry, 4)
	m.str(p.HasContentType, propContentType, p.ContentType)
	m.str(p.HasResponseTopic, propResponseTopic, p.ResponseTopic)
	m.bin(p.HasCorrelationData, propCorrelationData, p.CorrelationData)
	m.fixed(p.HasSessionExpiry, propSessionExpiry, 4)
	m.str(p.HasAssignedClientID, propAssignedClientID, p.AssignedClientID)
	m.fixed(p.HasServerKeepAlive, propServerKeepAlive, 2)
	m.str(p.HasAuthMethod, propAuthMethod, p.AuthMethod)
	m.bin(p.HasAuthData, propAuthData, p.AuthData)
	m.fixed(p.HasRequestProblemInfo, propRequestProblemInfo, 1)
	m.fixed(p.HasWillDelay, propWillDelay, 4)
	m.fixed(p.HasRequestResponseInfo, propRequestResponseInfo, 1)
	m.str(p.HasResponseInfo, propResponseInfo, p.ResponseInfo)
	m.str(p.HasServerReference, propServerReference, p.ServerReference)
	m.str(p.HasReasonString, propReasonString, p.ReasonString)
	m.fixed(p.HasReceiveMaximum, propReceiveMaximum, 2)
	m.fixed(p.HasTopicAliasMaximum, propTopicAliasMaximum, 2)
	m.fixed(p.HasTopicAlias, propTopicAlias, 2)
	m.fixed(p.HasMaximumQoS, propMaximumQoS, 1)
	m.fixed(p.HasRetainAvailable, propRetainAvailable, 1)
	m.fixed(p.HasMaximumPacketSize, propMaximumPacketSize, 4)
	m.fixed(p.HasWildcardSubAvailable, propWildcardSubAvailable, 1)
	m.fixed(p.HasSubIDAvailable, propSubIDAvailable, 1)
	m.fixed(p.HasSharedSubAvailable, propSharedSubAvailable, 1)
	for _, id := range p.SubscriptionIdentifiers {
		if id > MaxVarint && m.err == nil {
			m.err = Errorf(MalformedPacket, "subscription identifier %d out of range", id)
		}
		m.add(propSubscriptionID, varintLen(int(id)))
	}
	for _, u := range p.UserProperties {
		m.add(propUserProperty, 0)
		m.n += m.strLen(propUserProperty, u.Key) + m.strLen(propUserProperty, u.Value)
	}
	if m.err == nil && m.n > 0 {
		m.err = checkProperties(p)
	}
	if m.err != nil {
		return 0, m.err.in(what)
	}
	return m.n, nil
}

// propMeasure adds up the encoded length of properties; the first error
// sticks, as the decoder's does.
type propMeasure struct {
	allowed propSet
	n       int
	err     *Error
}

// fixed counts a property of size bytes after its identifier.
func (m *propMeasure) fixed(has bool, id byte, size int) {
	if has {
		m.add(id, size)
	}
}

func (m *propMeasure) add(id byte, size int) {
	if !m.allowed.has(id) && m.err == nil {
		m.err = Errorf(MalformedPacket, "property 0x%02X is not allowed here", id)
	}
	m.n += 1 + size
}

// str counts a UTF-8 Encoded String property.
func (m *propMeasure) str(has bool, id byte, s string) {
	if has {
		m.add(id, m.strLen(id, s))
	}
}

// bin counts a Binary Data property.
func (m *propMeasure) bin(has bool, id byte, b []byte) {
	if has {
		if len(b) > 65535 && m.err == nil {
			m.err = Errorf(MalformedPacket, "property 0x%02X: binary data longer than 65535 bytes", id)
		}
		m.add(id, 2+len(b))
	}
}

// strLen is the encoded length of s, a string in property id; it records an
// error when s is not a UTF-8 Encoded String.
func (m *propMeasure) strLen(id byte, s string) int {
	if reason := stringError(s); reason != "" && m.err == nil {
		m.err = Errorf(MalformedPacket, "property 0x%02X: %s", id, reason)
	}
	return 2 + len(s)
}

// appendProperties appends the property length n (from propsLen) and p's
// properties, in identifier order with user properties last.
func appendProperties(dst []byte, p *Properties, n int) []byte {
	dst = appendVarint(dst, n)
	if n == 0 {
		return dst
	}
	if p.HasPayloadFormat {
		dst = append(dst, propPayloadFormat, p.PayloadFormat)
	}
	if p.HasMessageExpiry {
		dst = appendUint32(append(dst, propMessageExpiry), p.MessageExpiry)
	}
	if p.HasContentType {
		dst = appendString(append(dst, propContentType), p.ContentType)
	}
	if p.HasResponseTopic {
		dst = appendString(append(dst, propResponseTopic), p.ResponseTopic)
	}
	if p.HasCorrelationData {
		dst = appendBinary(append(dst, propCorrelationData), p.CorrelationData)
	}
	for _, id := range p.SubscriptionIdentifiers {
		dst = appendVarint(append(dst, propSubscriptionID), int(id))
	}
	if p.HasSessionExpiry {
		dst = appendUint32(append(dst, propSessionExpiry), p.SessionExpiry)
	}
	if p.HasAssignedClientID {
		dst = appendString(append(dst, propAssignedClientID), p.AssignedClientID)
	}
	if p.HasServerKeepAlive {
		dst = appendUint16(append(dst, propServerKeepAlive), p.ServerKeepAlive)
	}
	if p.HasAuthMethod {
		dst = appendString(append(dst, propAuthMethod), p.AuthMethod)
	}
	if p.HasAuthData {
		dst = appendBinary(append(dst, propAuthData), p.AuthData)
	}
	if p.HasRequestProblemInfo {
		dst = append(dst, propRequestProblemInfo, p.RequestProblemInfo)
	}
	if p.HasWillDelay {
		dst = appendUint32(append(dst, propWillDelay), p.WillDelay)
	}
	if p.HasRequestResponseInfo {
		dst = append(dst, propRequestResponseInfo, p.RequestResponseInfo)
	}
	if p.HasResponseInfo {
		dst = appendString(append(dst, propResponseInfo), p.ResponseInfo)
	}
	if p.HasServerReference {
		dst = appendString(append(dst, propServerReference), p.ServerReference)
	}
	if p.HasReasonString {
		dst = appendString(append(dst, propReasonString), p.ReasonString)
	}
	if p.HasReceiveMaximum {
		dst = appendUint16(append(dst, propReceiveMaximum), p.ReceiveMaximum)
	}
	if p.HasTopicAliasMaximum {
		dst = appendUint16(append(dst, propTopicAliasMaximum), p.TopicAliasMaximum)
	}
	if p.HasTopicAlias {
		dst = appendUint16(append(dst, propTopicAlias), p.TopicAlias)
	}
	if p.HasMaximumQoS {
		dst = append(dst, propMaximumQoS, p.MaximumQoS)
	}
	if p.HasRetainAvailable {
		dst = append(dst, propRetainAvailable, p.RetainAvailable)
	}
	if p.HasMaximumPacketSize {
		dst = appendUint32(append(dst, propMaximumPacketSize), p.MaximumPacketSize)
	}
	if p.HasWildcardSubAvailable {
		dst = append(dst, propWildcardSubAvailable, p.WildcardSubAvailable)
	}
	if p.HasSubIDAvailable {
		dst = append(dst, propSubIDAvailable, p.SubIDAvailable)
	}
	if p.HasSharedSubAvailable {
		dst = append(dst, propSharedSubAvailable, p.SharedSubAvailable)
	}
	for _, u := range p.UserProperties {
		dst = appendString(append(dst, propUserProperty), u.Key)
		dst = appendString(dst, u.Value)
	}
	return dst
}
