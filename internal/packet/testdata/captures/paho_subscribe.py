"""The MQTT 5 client of the v5-sub-paho capture, run with Debian's
python3-paho-mqtt (1.6, v1 API) by TestRecordCaptures: subscribes to
opts/# with No Local, Retain As Published, Retain Handling 2 (do not send
retained messages) and Subscription Identifier 9, publishes one message of
its own there at QoS 1 (which No Local keeps from coming back), then waits
for the one another client publishes and disconnects.
Usage: paho_subscribe.py -h HOST -p PORT"""
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
HOST, PORT = args["-h"], int(args["-p"])
TIMEOUT = 30

connected, subscribed, published, fed = (threading.Event() for _ in range(4))


def on_connect(client, userdata, flags, rc, properties=None):
    if rc != 0:
        raise SystemExit("connect refused: %s" % rc)
    connected.set()


def on_subscribe(client, userdata, mid, granted, properties=None):
    subscribed.set()


def on_publish(client, userdata, mid):
    published.set()


def on_message(client, userdata, msg):
    if msg.topic != "opts/feed":
        raise SystemExit("no local broken: got %s" % msg.topic)
    fed.set()


c = mqtt.Client(client_id="hf5-paho", protocol=mqtt.MQTTv5)
c.on_connect, c.on_subscribe = on_connect, on_subscribe
c.on_publish, c.on_message = on_publish, on_message
c.connect(HOST, PORT, keepalive=60, clean_start=True)
c.loop_start()
assert connected.wait(TIMEOUT), "no CONNACK"
props = Properties(PacketTypes.SUBSCRIBE)
props.SubscriptionIdentifier = 9
opts = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True,
                        retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
c.subscribe("opts/#", options=opts, properties=props)
assert subscribed.wait(TIMEOUT), "no SUBACK"
c.publish("opts/self", b"own", qos=1)
assert published.wait(TIMEOUT), "no PUBACK"
assert fed.wait(TIMEOUT), "no message from the other client"
c.disconnect()
c.loop_stop()
