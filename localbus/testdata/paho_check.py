"""Checks the local broker with the paho MQTT client (v1 API, Debian's
python3-paho-mqtt 1.6). Usage: paho_check.py HOST PORT. Prints ALL OK."""
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import pahoclient
from pahoclient import TIMEOUT, subscribe, wait_msgs, stop

HOST, PORT = sys.argv[1], int(sys.argv[2])


def connect(cid, proto):
    return pahoclient.connect(HOST, PORT, cid, proto)


for proto, name in ((mqtt.MQTTv311, "311"), (mqtt.MQTTv5, "5")):
    sub = connect("paho-sub-" + name, proto)
    subscribe(sub, "paho/%s/+" % name, 2)
    pub = connect("paho-pub-" + name, proto)
    pub.publish("paho/%s/a" % name, b"exactly-once", qos=2).wait_for_publish(TIMEOUT)
    m = wait_msgs(sub, 1)[0]
    assert m.topic == "paho/%s/a" % name and m.payload == b"exactly-once" and m.qos == 2, (m.topic, m.payload, m.qos)

    late = connect("paho-late-" + name, proto)
    pahoclient.check_retained(pub, late, "paho/ret" + name)
    stop(sub, pub, late)
    print("version", name, "ok")

# MQTT 5 request/response with correlation data and user properties.
responder = connect("paho-responder", mqtt.MQTTv5)
seen = {}


def respond(client, userdata, msg):
    seen["user"] = msg.properties.UserProperty
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = msg.properties.CorrelationData
    client.publish(msg.properties.ResponseTopic, b"pong", qos=1, properties=props)


responder.on_message = respond
subscribe(responder, "svc/req", 1)
requester = connect("paho-requester", mqtt.MQTTv5)
subscribe(requester, "svc/resp/1", 1)
props = Properties(PacketTypes.PUBLISH)
props.ResponseTopic = "svc/resp/1"
props.CorrelationData = b"corr-1"
props.UserProperty = ("who", "paho")
requester.publish("svc/req", b"ping", qos=1, properties=props).wait_for_publish(TIMEOUT)
r = wait_msgs(requester, 1)[0]
assert r.payload == b"pong" and r.properties.CorrelationData == b"corr-1", (r.payload, r.properties)
assert seen["user"] == [("who", "paho")], seen
stop(responder, requester)
print("request/response ok")

# Shared subscription: each message to one member of the group.
w1 = connect("paho-w1", mqtt.MQTTv5)
w2 = connect("paho-w2", mqtt.MQTTv5)
subscribe(w1, "$share/workers/jobs", 1)
subscribe(w2, "$share/workers/jobs", 1)
boss = connect("paho-boss", mqtt.MQTTv5)
for i in range(10):
    boss.publish("jobs", str(i).encode(), qos=1).wait_for_publish(TIMEOUT)
total = threading.Event()


def count():
    return len(w1.got) + len(w2.got)


for _ in range(TIMEOUT * 10):
    if count() >= 10:
        break
    total.wait(0.1)
assert count() == 10 and w1.got and w2.got, (len(w1.got), len(w2.got))
stop(w1, w2, boss)
print("shared subscription ok")
print("ALL OK")
