"""A check-in tablet's day, through the generated Python bindings loading the
built library, against a real sync-server process on loopback.

Two tablets (two door staff) sign in (one enrolls its authenticator, one passes
a computed TOTP code), download the event, lock the kiosk, lose the server,
scan offline (tablet A 500 scans, some twice, and a code the server signed for
someone not in the list; tablet B scans 30 of A's tickets too), the server comes back, both sync, and the server-side counts
and duplicates are checked on a fresh replica downloaded from the server.

Run by tests/tests/mobile_bindings.rs, which passes:
  BINDINGS_DIR       generated Python module + library (tests/mobile/build.sh)
  SYNC_SERVER_BIN    the sync-server binary
  EVENT_FIXTURE_BIN  tests/src/bin/event-fixture.rs
  WORK_DIR           a scratch directory
  TLS_CERT, TLS_KEY  the server's certificate and key (PEM), from TLS_CA:
  TLS_CA             a CA made by the test; the tablets trust it, and a tablet
                     that does not is refused with `UntrustedServer`
"""

import asyncio
import atexit
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.environ["BINDINGS_DIR"])
import sync_core  # noqa: E402  (the generated module)
from sync_core import (  # noqa: E402
    CheckInAnswer,
    Direction,
    SettingValue,
    SignInStep,
    TabletConfig,
    TabletError,
)

SERVER = os.environ["SYNC_SERVER_BIN"]
FIXTURE = os.environ["EVENT_FIXTURE_BIN"]
WORK = os.environ["WORK_DIR"]
TLS_CERT, TLS_KEY, TLS_CA = (os.environ[k] for k in ("TLS_CERT", "TLS_KEY", "TLS_CA"))
with open(TLS_CA) as ca_file:
    CA_PEM = ca_file.read()
# This script's own REST calls trust the same CA; so does the event fixture.
TRUSTING = ssl.create_default_context(cafile=TLS_CA)
os.environ["SYNC_CA_FILE"] = TLS_CA
PASSWORD = "correct horse battery"
LIMIT = 60.0


def log(*parts):
    print("[tablet-day]", *parts, flush=True)


# ---- TOTP (RFC 6238), checked against the RFC's own vectors first ----

def hotp(secret: bytes, counter: int, digits: int = 6) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


assert hotp(b"12345678901234567890", 0) == "755224"
assert hotp(b"12345678901234567890", 59 // 30, 8) == "94287082"


def secret_from_uri(uri: str) -> bytes:
    query = uri.split("?", 1)[1]
    params = dict(p.split("=", 1) for p in query.split("&"))
    text = params["secret"]
    return base64.b32decode(text + "=" * (-len(text) % 8))


def totp_step() -> int:
    return int(time.time()) // 30


# ---- the server process ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.sync_url = f"wss://127.0.0.1:{self.port}/sync"
        self.process = None

    def cli(self, *args, stdin=None) -> str:
        done = subprocess.run(
            [SERVER, "--data-dir", self.data_dir, *args],
            input=stdin, capture_output=True, text=True, check=True,
        )
        return done.stdout.strip()

    def start(self):
        # A failing run must not leave the server behind.
        atexit.register(self.kill_if_running)
        log_file = open(os.path.join(WORK, "server.log"), "a")
        self.process = subprocess.Popen(
            [SERVER, "--data-dir", self.data_dir, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--tls-cert", TLS_CERT, "--tls-key", TLS_KEY],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + LIMIT
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1, context=TRUSTING)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=LIMIT)

    def kill_if_running(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def api(self, method: str, path: str, token: str = None, body=None):
        request = urllib.request.Request(self.base + path, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, data=data, timeout=10, context=TRUSTING) as reply:
            text = reply.read()
            return json.loads(text) if text else None


def enroll_by_rest(server: Server, email: str):
    """Enrolls an authenticator the way the desktop app would; returns
    (secret, recovery codes)."""
    login = server.api("POST", "/api/auth/login", body={
        "email": email, "password": PASSWORD, "device_name": "desk", "app_version": "test"})
    assert login["status"] == "enrollment_required", login
    started = server.api("POST", "/api/auth/enroll/start", body={"challenge": login["challenge"]})
    secret = secret_from_uri(started["otpauth_uri"])
    confirmed = server.api("POST", "/api/auth/enroll/confirm", body={
        "challenge": login["challenge"], "code": hotp(secret, totp_step())})
    return secret, confirmed["recovery_codes"]


# ---- the app's side: secure storage and a listener ----

class MemorySecureStore(sync_core.SecureStore):
    """Stands in for Android's Keystore / iOS Keychain."""

    def __init__(self):
        self.secrets = {}

    def load(self, key):
        return self.secrets.get(key)

    def save(self, key, secret):
        self.secrets[key] = secret

    def delete(self, key):
        self.secrets.pop(key, None)


class RecordingListener(sync_core.TabletListener):
    def __init__(self):
        self.statuses = []
        self.sessions = []
        self.changed_events = set()
        self.settings = []
        self.refused = []

    def sync_status_changed(self, status):
        self.statuses.append(status)

    def session_changed(self, state):
        self.sessions.append(state)

    def event_changed(self, document_id):
        self.changed_events.add(document_id)

    def settings_changed(self, settings):
        self.settings.append(settings)

    def changes_refused(self, document_id, count):
        self.refused.append((document_id, count))


async def until(what, check, limit=LIMIT):
    deadline = time.time() + limit
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def download(tablet, document_id):
    """Lists the events (which starts the download of those assigned) and
    waits, on local data only, until the event's doors are there."""
    listed = await tablet.list_events()
    assert any(e.document_id == document_id for e in listed), listed
    await until("the event downloads", lambda: tablet.checkin_lists(document_id))
    assert any(e.document_id == document_id and e.downloaded and e.name == "Tablet day"
               for e in await tablet.list_events())


async def main():
    server = Server(os.path.join(WORK, "server"))
    os.makedirs(server.data_dir, exist_ok=True)
    for email in ("alice@example.org", "bob@example.org"):
        server.cli("user", "create", "--email", email, "--role", "staff", "--password-stdin",
                   stdin=PASSWORD + "\n")
    admin_token = server.cli("token", "create", "--name", "fixture", "--role", "admin")
    server.start()
    log("server on", server.base)

    seeded = json.loads(subprocess.run(
        [FIXTURE, "seed", server.sync_url, admin_token, "day-1", "1000",
         os.path.join(WORK, "admin.sqlite3")],
        capture_output=True, text=True, check=True).stdout)
    event = seeded["document_id"]
    users = server.api("GET", "/api/users", admin_token)
    for user in users:
        server.api("PUT", f"/api/users/{user['id']}/events", admin_token, {"events": ["day-1"]})
    bob_secret, bob_recovery = enroll_by_rest(server, "bob@example.org")

    store = MemorySecureStore()
    a = await sync_core.open_tablet(
        TabletConfig(data_dir=os.path.join(WORK, "tablet-a"), server_urls=[server.sync_url],
                     extra_ca_pem=CA_PEM,
                     device_name="Door A"), store)
    b = await sync_core.open_tablet(
        TabletConfig(data_dir=os.path.join(WORK, "tablet-b"), server_urls=[server.sync_url],
                     extra_ca_pem=CA_PEM,
                     device_name="Door B"), store)
    listener = RecordingListener()
    a.set_listener(listener)
    assert a.session_state().is_signed_out()

    # A tablet that does not trust the venue's CA is refused before it sends
    # anything, with an error that says so (what the device shows).
    stranger = await sync_core.open_tablet(
        TabletConfig(data_dir=os.path.join(WORK, "tablet-untrusting"),
                     server_urls=[server.sync_url], device_name="Door X"), MemorySecureStore())
    try:
        await stranger.sign_in("alice@example.org", PASSWORD)
        raise AssertionError("signed in to a server whose certificate is not trusted")
    except TabletError.UntrustedServer as untrusted:
        assert "not trusted" in untrusted.detail, untrusted.detail
        log("untrusted server shows:", untrusted.detail)
    await stranger.shutdown()

    # Typed errors with messages: wrong password, a scan before choosing an event.
    try:
        await a.sign_in("alice@example.org", "wrong password")
        raise AssertionError("a wrong password signed in")
    except TabletError.Refused as refused:
        assert refused.code == "invalid_credentials", refused
        assert refused.detail, "a message to show"
    try:
        await a.check_in("T-0001", Direction.ENTRY)
        raise AssertionError("scanned without an event")
    except TabletError.NoEventChosen as e:
        assert "choose an event" in e.detail

    # Tablet A: Alice enrolls her authenticator on the tablet.
    step = await a.sign_in("alice@example.org", PASSWORD)
    assert step.is_enrollment_required(), step
    enrollment = await a.start_enrollment(step.challenge)
    assert enrollment.qr_png[:8] == b"\x89PNG\r\n\x1a\n"
    alice_secret = secret_from_uri(enrollment.otpauth_uri)
    enrolled = await a.confirm_enrollment(step.challenge, hotp(alice_secret, totp_step()))
    assert len(enrolled.recovery_codes) >= 8
    assert enrolled.session.role == "staff"
    assert a.session_state().is_signed_in()
    log("tablet A signed in by enrolling")

    # Tablet B: Bob passes a computed TOTP code (after a wrong one).
    step = await b.sign_in("bob@example.org", PASSWORD)
    assert step.is_second_factor_required(), step
    try:
        await b.submit_totp(step.challenge, "000000" if hotp(bob_secret, totp_step()) != "000000" else "111111")
        raise AssertionError("a wrong code signed in")
    except TabletError.Refused as refused:
        assert refused.code == "invalid_code", refused
    step = await b.sign_in("bob@example.org", PASSWORD)
    session = await b.submit_totp(step.challenge, hotp(bob_secret, totp_step() + 1))
    assert session.email == "bob@example.org"
    log("tablet B signed in with a TOTP code")

    # Download the event and choose the main door.
    for tablet in (a, b):
        await download(tablet, event)
        lists = await tablet.checkin_lists(event)
        assert sorted(l.list_id for l in lists) == ["later", "main", "vip"], lists
        await tablet.choose_event(event, "main")
    assert a.chosen_event().list_id == "main"
    # A door that opens later (a time rule of the list): the answer says
    # from when, and nothing is recorded.
    later = next(l for l in await a.checkin_lists(event) if l.list_id == "later")
    assert later.valid_from_ms and later.weekdays == "mon,tue,wed,thu,fri,sat,sun", later
    await a.choose_event(event, "later")
    early = await a.check_in("T-0001", Direction.ENTRY)
    assert early.answer == CheckInAnswer.NOT_YET_VALID, early
    assert early.valid_from_ms == later.valid_from_ms and early.scan_id is None, early
    await a.choose_event(event, "main")
    counts = await a.counts("main")
    assert (counts.expected, counts.checked_in) == (1000, 0), counts
    assert event in listener.changed_events, "the listener heard the download"
    found = await a.search("Guest 42", 10)
    assert any(x.ticket_code == "T-0042" for x in found), found
    found = await a.search("T-010", 20)
    assert len(found) == 10 and all(x.ticket_code.startswith("T-010") for x in found), found

    # The member's settings and the organisation's configuration.
    await a.set_setting("theme", SettingValue.TEXT("dark"))
    assert (await a.settings()).theme == "dark"
    try:
        await a.set_setting("theme", SettingValue.TEXT("neon"))
        raise AssertionError("an invalid theme was accepted")
    except TabletError.InvalidInput as e:
        assert "theme" in e.detail
    assert (await a.org_config()).kiosk_pin_length == 6

    # Kiosk lock: leaving the scan screen needs the PIN.
    await a.kiosk_lock("424242")
    assert a.kiosk_locked()
    try:
        await a.choose_event(event, "vip")
        raise AssertionError("the locked kiosk changed event")
    except TabletError.KioskLocked:
        pass
    try:
        await a.kiosk_unlock("000000")
        raise AssertionError("a wrong PIN unlocked")
    except TabletError.WrongPin as e:
        assert e.retry_after_secs == 0
    assert a.kiosk_locked()

    await until("both tablets are online and idle", lambda: all(
        t.sync_status().connected and t.sync_status().pending_changes == 0 for t in (a, b)))

    # A late registration: the server signs a code for someone the tablets'
    # list does not hold (the tablets fetched the event's key with the list).
    issued = server.api("POST", f"/api/events/{event}/tickets", admin_token,
                        {"attendee_id": "late-guest-py", "ticket_type": "day"})
    signed_code = issued["code"]
    assert signed_code.startswith("TK1:"), issued

    # The server goes away.
    server.stop()
    log("server stopped")
    await until("tablet A notices", lambda: not a.sync_status().connected)

    # Offline: A scans 450 tickets, then 50 of them again (500 scans).
    answers = {}
    a_device = enrolled.session.device_id
    started = time.time()
    for i in range(450):
        result = await a.check_in(f"T-{i:04}", Direction.ENTRY)
        answers[result.answer] = answers.get(result.answer, 0) + 1
    for i in range(50):
        result = await a.check_in(f"T-{i:04}", Direction.ENTRY)
        answers[result.answer] = answers.get(result.answer, 0) + 1
        assert result.previous is not None and result.previous.device_id == a_device, result
    log(f"tablet A: 500 offline scans in {time.time() - started:.2f} s: {answers}")
    assert answers == {CheckInAnswer.ADMITTED: 450, CheckInAnswer.ALREADY_CHECKED_IN: 50}, answers
    unknown = await a.check_in("NOPE-1", Direction.ENTRY)
    assert unknown.answer == CheckInAnswer.UNKNOWN_TICKET and unknown.attendee is None
    # T-0999 has not paid: nothing is recorded until staff confirm payment.
    asked = await a.check_in("T-0999", Direction.ENTRY)
    assert asked.answer == CheckInAnswer.CONFIRM_PAYMENT and asked.scan_id is None, asked
    assert asked.attendee.unpaid, asked
    mistake = await a.check_in_confirming_payment("T-0999", Direction.ENTRY)
    assert mistake.answer == CheckInAnswer.ADMITTED and mistake.scan_id, mistake
    # A mistaken scan is annulled and made again (payment confirmed again:
    # the annulled entry never happened).
    await a.annul(mistake.scan_id)
    assert (await a.check_in("T-0999", Direction.ENTRY)).answer == CheckInAnswer.CONFIRM_PAYMENT
    again = await a.check_in_confirming_payment("T-0999", Direction.ENTRY)
    assert again.answer == CheckInAnswer.ADMITTED
    # Offline, the signed code is admitted on the key's word (with its
    # ticket type's note for staff); altered, refused.
    signed = await a.check_in(signed_code, Direction.ENTRY)
    assert signed.answer == CheckInAnswer.ADMITTED_WITH_ATTENTION and signed.verified_by_signature, signed
    assert signed.attention_note == "Day ticket: stamp the hand", signed
    assert signed.attendee.attendee_id == "late-guest-py" and signed.attendee.name == "", signed
    forged = signed_code[:-3] + ("BBB" if signed_code.endswith("AAA") else "AAA")
    assert (await a.check_in(forged, Direction.ENTRY)).answer == CheckInAnswer.INVALID_SIGNATURE
    try:
        await a.annul("no-such-scan")
        raise AssertionError("annulled a scan that does not exist")
    except TabletError.NotFound:
        pass
    assert a.sync_status().pending_changes > 0

    # Offline too: B scans 30 of A's tickets and 10 of its own.
    b_device = session.device_id
    for i in list(range(400, 430)) + list(range(900, 910)):
        result = await b.check_in(f"T-{i:04}", Direction.ENTRY)
        assert result.answer == CheckInAnswer.ADMITTED, result
    counts = await a.counts("main")
    assert counts.checked_in == 451, counts

    # The server comes back on the same address; both tablets sync.
    server.start()
    log("server restarted")
    await until("every scan is confirmed by the server", lambda: all(
        t.sync_status().connected and t.sync_status().pending_changes == 0 for t in (a, b)))
    async def both_complete():
        ca, cb = await a.counts("main"), await b.counts("main")
        return ca.checked_in == 461 and cb.checked_in == 461
    await until("both tablets count every scan", both_complete)
    duplicates = await a.duplicates()
    assert len(duplicates) == 30, len(duplicates)
    assert all(d.scan.device_id == b_device and d.original.device_id == a_device
               for d in duplicates), duplicates[:2]
    assert [d.ticket_code for d in await b.duplicates()] == [d.ticket_code for d in duplicates]
    # The day's figures, from each tablet's own data: the same on both.
    report = await a.checkin_report(15)
    assert report == await b.checkin_report(15), "both tablets hold the same scans"
    main = next(l for l in report.lists if l.list_id == "main")
    # A: 450 + T-0999 + the signed code; B: 10 of its own; 30 duplicates.
    assert (main.entries, main.duplicates) == (462, 30), main
    assert sum(x.entries for x in report.arrivals) == 462, report.arrivals
    by_device = {d.device_id: d for d in report.devices}
    assert (by_device[a_device].entries, by_device[a_device].annulled) == (452, 1), by_device
    assert by_device[a_device].payments_taken == 1, "T-0999 paid at the door (the annulled scan's not counted)"
    assert (by_device[b_device].entries, by_device[b_device].duplicates) == (10, 30), by_device
    assert by_device[a_device].median_gap_ms is not None
    assert report.peak is not None and report.peak.entries >= 1, report.peak
    assert [(t.ticket_type, t.expected, t.checked_in, t.no_shows) for t in report.ticket_types] == [
        ("", 1000, 461, 539)], report.ticket_types
    try:
        await a.checkin_report(0)
        raise AssertionError("a bucket of no minutes was accepted")
    except TabletError.InvalidInput as e:
        assert "minutes" in e.detail, e.detail
    exported = (await a.checkin_report_csv()).splitlines()
    assert exported[0].startswith("ticket_code,name,email,ticket_type,status"), exported[0]
    assert len(exported) == 1001 and sum(",checked_in," in l for l in exported) == 461
    assert any(not s.connected for s in listener.statuses), "the listener saw the outage"
    assert any(s.problem_code == "unreachable" and s.problem == "Can't reach the server"
               and s.next_retry_ms for s in listener.statuses), "the outage in plain words"
    assert listener.statuses[-1].last_sync_ms is not None

    # What the server holds, seen by a fresh replica downloaded from it.
    held = json.loads(subprocess.run(
        [FIXTURE, "inspect", server.sync_url, admin_token, event,
         os.path.join(WORK, "inspect.sqlite3")],
        capture_output=True, text=True, check=True).stdout)
    log("server-side:", json.dumps(held["counts"]), "duplicates:", len(held["duplicates"]))
    assert held["counts"]["checked_in"] == 461, held["counts"]
    assert held["counts"]["expected"] == 1000, held["counts"]
    assert held["main"]["checked_in"] == 461, held["main"]
    assert len(held["duplicates"]) == 30, held["duplicates"][:3]
    assert all(d["device_id"] == b_device and d["original_device_id"] == a_device
               for d in held["duplicates"])
    assert sorted(d["ticket_code"] for d in held["duplicates"]) == [
        f"T-{i:04}" for i in range(400, 430)]

    # End of the day: the kiosk unlocks with its PIN, Alice signs out; Bob
    # signs out and back in with a recovery code.
    await a.kiosk_unlock("424242")
    assert not a.kiosk_locked()
    await a.sign_out()
    assert a.session_state().is_signed_out()
    await b.sign_out()
    step = await b.sign_in("bob@example.org", PASSWORD)
    await b.submit_recovery_code(step.challenge, bob_recovery[0])
    assert b.session_state().is_signed_in()
    await a.shutdown()
    await b.shutdown()
    server.stop()
    log("tablet day complete")


if __name__ == "__main__":
    asyncio.run(main())
