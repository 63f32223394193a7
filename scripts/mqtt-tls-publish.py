#!/usr/bin/env python3
"""Publishes one message at QoS 1 over MQTT with TLS using paho-mqtt (a client that is not the
platform's), for the MQTTS tests: the CA to trust, optionally a client certificate and key, and
optionally a username and password. Prints what happened; exits 0 once the broker acknowledged
the message, 1 if the connection or the publish was refused.

  mqtt-tls-publish.py --port 8883 --cafile ca.pem --cert device.pem --key device.key \
      --client-id DEVICE --topic devices/DEVICE/telemetry --message '{"pressure": 1}'
"""
import argparse
import sys
import threading

import paho.mqtt.client as mqtt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--message", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key)
    if args.username:
        client.username_pw_set(args.username, args.password)
    connected = threading.Event()
    outcome = {}

    def on_connect(_client, _userdata, _flags, reason, _properties):
        outcome["connack"] = str(reason)
        connected.set()

    def on_disconnect(_client, _userdata, _flags, reason, _properties):
        outcome.setdefault("connack", f"disconnected: {reason}")
        connected.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as err:  # the TLS handshake refused, or nothing listening
        print(f"connect failed: {err}")
        return 1
    client.loop_start()
    if not connected.wait(args.timeout) or outcome.get("connack") != "Success":
        print(f"not connected: {outcome.get('connack', 'no CONNACK')}")
        client.loop_stop()
        return 1
    info = client.publish(args.topic, args.message, qos=1)
    info.wait_for_publish(args.timeout)
    acknowledged = info.is_published()
    client.disconnect()
    client.loop_stop()
    print("acknowledged" if acknowledged else "not acknowledged")
    return 0 if acknowledged else 1


if __name__ == "__main__":
    sys.exit(main())
