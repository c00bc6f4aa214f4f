"""What the paho scripts here share: a paho MQTT client (v1 API, Debian's
python3-paho-mqtt 1.6) that records what it receives, and waits with a
timeout for CONNACK, SUBACK and messages."""
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 20


def connect(host, port, cid, proto, clean=True, expiry=None, transport="tcp", path=None, tls=None):
    """Connects and waits for CONNACK 0. clean is Clean Session (3.1.1) or
    Clean Start (5.0); expiry is the 5.0 Session Expiry Interval; path is
    the WebSocket path; tls is (cafile, certfile, keyfile). The client keeps
    the CONNACK's flags and properties, the last SUBACK's granted codes and
    every message it receives (got, guarded by got_cond)."""
    if proto == mqtt.MQTTv5:
        c = mqtt.Client(client_id=cid, protocol=proto, transport=transport)
    else:
        c = mqtt.Client(client_id=cid, protocol=proto, clean_session=clean, transport=transport)
    if path is not None:
        c.ws_set_options(path=path)
    if tls:
        c.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
    c.connected = threading.Event()
    c.subscribed = threading.Event()
    c.got = []
    c.got_cond = threading.Condition()

    def on_connect(client, userdata, flags, rc, properties=None):
        client.flags, client.props = flags, properties
        if rc == 0:
            client.connected.set()
        else:
            print("%s: connect refused: %s" % (cid, rc))

    def on_subscribe(client, userdata, mid, granted, properties=None):
        client.granted = granted
        client.subscribed.set()

    def on_message(client, userdata, msg):
        with client.got_cond:
            client.got.append(msg)
            client.got_cond.notify_all()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    kw = {}
    if proto == mqtt.MQTTv5:
        kw["clean_start"] = clean
        if expiry is not None:
            p = Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval = expiry
            kw["properties"] = p
    c.connect(host, port, keepalive=30, **kw)
    c.loop_start()
    assert c.connected.wait(TIMEOUT), cid + ": no CONNACK"
    return c


def subscribe(c, topic, qos):
    c.subscribed.clear()
    c.subscribe(topic, qos)
    assert c.subscribed.wait(TIMEOUT), "no SUBACK for " + topic


def wait_msgs(c, n):
    with c.got_cond:
        ok = c.got_cond.wait_for(lambda: len(c.got) >= n, TIMEOUT)
    assert ok, "%s: got %d messages, want %d" % (c._client_id, len(c.got), n)
    return c.got[:n]


def stop(*cs):
    for c in cs:
        c.disconnect()
        c.loop_stop()


def check_retained(pub, late, topic):
    """Publishes a retained message with pub, then subscribes late to its
    topic: late must get it with the retain flag."""
    pub.publish(topic, b"kept", qos=1, retain=True).wait_for_publish(TIMEOUT)
    subscribe(late, topic, 1)
    m = wait_msgs(late, 1)[0]
    assert m.retain and m.payload == b"kept", (m.topic, m.payload, m.retain)
