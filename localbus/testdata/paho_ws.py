"""Checks the local broker over MQTT over WebSocket with the paho MQTT client
(v1 API, Debian's python3-paho-mqtt 1.6), in 3.1.1 and 5.0.

Usage: paho_ws.py HOST PORT PATH [CAFILE CERTFILE KEYFILE]

With the three PEM files it connects over TLS (wss) with that client
certificate. For each version a subscriber and a publisher connect, a QoS 1
and a QoS 2 message go through, and a retained message reaches a later
subscriber. Prints ALL OK."""
import sys

import paho.mqtt.client as mqtt

import pahoclient
from pahoclient import TIMEOUT, subscribe, wait_msgs, stop

HOST, PORT, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TLS = sys.argv[4:7]


def connect(cid, proto):
    return pahoclient.connect(HOST, PORT, cid, proto, transport="websockets", path=PATH, tls=TLS)


for proto, name in ((mqtt.MQTTv311, "311"), (mqtt.MQTTv5, "5")):
    sub = connect("ws-sub-" + name, proto)
    subscribe(sub, "ws/%s/+" % name, 2)
    pub = connect("ws-pub-" + name, proto)
    pub.publish("ws/%s/one" % name, b"at least once", qos=1).wait_for_publish(TIMEOUT)
    pub.publish("ws/%s/two" % name, b"exactly once", qos=2).wait_for_publish(TIMEOUT)
    got = [(m.topic, m.payload, m.qos) for m in wait_msgs(sub, 2)]
    want = [("ws/%s/one" % name, b"at least once", 1), ("ws/%s/two" % name, b"exactly once", 2)]
    assert got == want, got
    late = connect("ws-late-" + name, proto)
    pahoclient.check_retained(pub, late, "ws/ret" + name)
    stop(sub, pub, late)
    print("version", name, "ok")
print("ALL OK")
