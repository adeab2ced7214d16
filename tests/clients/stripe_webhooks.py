"""The official `stripe` package and tollgate agree on Stripe-Signature.

verify: reads STRIPE_PAYLOAD (a file), STRIPE_SIGNATURE (made by tollgate's signer) and
        STRIPE_SECRET; checks them with stripe.Webhook.construct_event, and checks that a body
        altered by one byte and a wrong secret are refused. Prints the event id.
sign:   signs STRIPE_PAYLOAD the way Stripe documents it (HMAC-SHA256 of "{t}.{payload}" with the
        endpoint secret, hex) and prints the header, for tollgate to accept.
"""

import hashlib
import hmac
import os
import sys
import time

import stripe


def main() -> None:
    mode = sys.argv[1]
    with open(os.environ["STRIPE_PAYLOAD"], "rb") as f:
        payload = f.read().decode("utf-8")
    secret = os.environ["STRIPE_SECRET"]
    if mode == "verify":
        header = os.environ["STRIPE_SIGNATURE"]
        event = stripe.Webhook.construct_event(payload, header, secret)
        altered = payload[:-2] + ("x" if payload[-2] != "x" else "y") + payload[-1:]
        for body, key in ((altered, secret), (payload, secret + "x")):
            try:
                stripe.Webhook.construct_event(body, header, key)
            except stripe.SignatureVerificationError:
                continue
            raise SystemExit("an altered body or a wrong secret was accepted")
        print(event["id"])
    elif mode == "sign":
        t = int(time.time())
        mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
        print(f"t={t},v1={mac}")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
