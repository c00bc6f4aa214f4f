"""Scenarios of the Eclipse Paho interoperability tests, run with Debian's
python3-paho-mqtt (1.6, v1 API) against the local broker: overlapping
subscriptions with subscription identifiers, zero-length client id, $-topics,
offline message queueing and subscription options. Usage: paho_interop.py
HOST PORT. Prints ALL OK."""
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import pahoclient
from pahoclient import TIMEOUT, wait_msgs, stop

HOST, PORT = sys.argv[1], int(sys.argv[2])


def connect(cid, proto, clean=True, expiry=None):
    return pahoclient.connect(HOST, PORT, cid, proto, clean=clean, expiry=expiry)


def subscribe(c, topic, qos, sub_id=None, **opts):
    c.subscribed.clear()
    if c._protocol == mqtt.MQTTv5:
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts), properties=props)
    else:
        c.subscribe(topic, qos)
    assert c.subscribed.wait(TIMEOUT), "no SUBACK for " + topic
    return c.granted


def settle(c, marker_topic):
    """Publishes a marker to the client's own subscription and waits for it,
    so that everything sent before has arrived; returns the messages before
    the marker."""
    n = len(c.got)
    c.publish(marker_topic, b"marker", qos=1).wait_for_publish(TIMEOUT)
    with c.got_cond:
        ok = c.got_cond.wait_for(lambda: any(m.payload == b"marker" for m in c.got[n:]), TIMEOUT)
    assert ok, "marker not received"
    return [m for m in c.got if m.payload != b"marker"]


# Overlapping subscriptions (5.0): one copy at the highest QoS with both
# subscription identifiers (the suite accepts this or one copy each).
a = connect("interop-overlap", mqtt.MQTTv5)
subscribe(a, "ov/#", 2, sub_id=1)
subscribe(a, "ov/+", 1, sub_id=2)
subscribe(a, "ovmark", 1)
a.publish("ov/a", b"overlap", qos=2).wait_for_publish(TIMEOUT)
got = settle(a, "ovmark")
assert len(got) == 1 and got[0].qos == 2, [(m.topic, m.qos) for m in got]
assert sorted(got[0].properties.SubscriptionIdentifier) == [1, 2], got[0].properties
stop(a)
print("overlapping subscriptions ok")

# Overlapping subscriptions (3.1.1): one copy at the highest QoS.
a = connect("interop-overlap311", mqtt.MQTTv311)
subscribe(a, "ov3/#", 2)
subscribe(a, "ov3/+", 1)
subscribe(a, "ov3mark", 1)
a.publish("ov3/a", b"overlap", qos=2).wait_for_publish(TIMEOUT)
got = settle(a, "ov3mark")
assert len(got) == 1 and got[0].qos == 2, [(m.topic, m.qos) for m in got]
stop(a)
print("overlapping subscriptions 3.1.1 ok")

# Zero-length client id (5.0): an identifier is assigned.
z = connect("", mqtt.MQTTv5)
assert z.props.AssignedClientIdentifier, z.props
stop(z)
print("zero length client id ok")

# $-topics are not matched by a leading wildcard.
d = connect("interop-dollar", mqtt.MQTTv311)
subscribe(d, "#", 1)
d.publish("$interop/x", b"dollar", qos=1).wait_for_publish(TIMEOUT)
got = settle(d, "dollarmark")
assert got == [], [(m.topic, m.payload) for m in got]
stop(d)
print("$-topics ok")

# Offline message queueing (3.1.1 clean session 0): QoS 1 and 2 kept.
o = connect("interop-offline", mqtt.MQTTv311, clean=False)
subscribe(o, "offline/+", 2)
stop(o)
p = connect("interop-offline-pub", mqtt.MQTTv311)
for q in (0, 1, 2):
    p.publish("offline/%d" % q, b"q%d" % q, qos=q).wait_for_publish(TIMEOUT)
stop(p)
o = connect("interop-offline", mqtt.MQTTv311, clean=False)
assert o.flags["session present"] == 1, o.flags
subscribe(o, "offmark", 1)
got = settle(o, "offmark")
assert sorted(m.payload for m in got) == [b"q1", b"q2"], [m.payload for m in got]
stop(o)
print("offline message queueing ok")

# Subscription options (5.0): No Local, Retain As Published, Retain Handling 2.
s = connect("interop-options", mqtt.MQTTv5)
s.publish("opt/ret", b"retained", qos=1, retain=True).wait_for_publish(TIMEOUT)
subscribe(s, "opt/+", 1, noLocal=True, retainAsPublished=True, retainHandling=2)
other = connect("interop-options-pub", mqtt.MQTTv5)
other.publish("opt/live", b"live", qos=1, retain=True).wait_for_publish(TIMEOUT)
s.publish("opt/own", b"own", qos=1).wait_for_publish(TIMEOUT)
subscribe(s, "optmark", 1)
got = settle(s, "optmark")
assert [(m.payload, m.retain) for m in got] == [(b"live", True)], [(m.payload, m.retain) for m in got]
other.publish("opt/ret", b"", qos=1, retain=True).wait_for_publish(TIMEOUT)
other.publish("opt/live", b"", qos=1, retain=True).wait_for_publish(TIMEOUT)
stop(s, other)
print("subscription options ok")
print("ALL OK")
