"""The channels students and parents write or call on, each one adapter in front of the one switchboard:
Telegram (telegram.py), SMS (sms.py) and a Mandarin phone line (voice.py) through Twilio, and a WeChat
Official Account (wechat.py). What they share lives in base.py; the delivery dispatcher (delivery.py)
sends users the messages no webhook is waiting for."""
