// A tablet signs in and scans through the generated Kotlin bindings (JNA,
// coroutines), against a real sync-server on loopback. Run by
// tests/tests/mobile_bindings.rs, which starts the server, creates the staff
// member (enrolled, TOTP secret passed as hex), the event and the assignment,
// and afterwards checks on the server that the scan arrived.
//
// Environment: SERVER_URL (wss://), CA_PEM_FILE (the CA the tablet trusts beside the
// system's), EMAIL, PASSWORD, TOTP_SECRET_HEX, EVENT_DOCUMENT, DATA_DIR, SIGNED_CODE (a code
// the server signed for `late-guest-1`, who is not in the event's list).
// Prints `signed <scan id>` and `scanned <scan id> on device <device id>` when done; exits
// non-zero on any failure.

import events.sync.core.*
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking

fun hotp(secret: ByteArray, counter: Long, digits: Int = 6): String {
    val mac = Mac.getInstance("HmacSHA1")
    mac.init(SecretKeySpec(secret, "HmacSHA1"))
    val hash = mac.doFinal(java.nio.ByteBuffer.allocate(8).putLong(counter).array())
    val offset = hash[hash.size - 1].toInt() and 0x0f
    val binary = ((hash[offset].toInt() and 0x7f) shl 24) or
        ((hash[offset + 1].toInt() and 0xff) shl 16) or
        ((hash[offset + 2].toInt() and 0xff) shl 8) or
        (hash[offset + 3].toInt() and 0xff)
    var modulus = 1
    repeat(digits) { modulus *= 10 }
    return (binary % modulus).toString().padStart(digits, '0')
}

fun check(condition: Boolean, what: () -> String) {
    if (!condition) throw AssertionError(what())
}

class MemorySecureStore : SecureStore {
    private val secrets = java.util.concurrent.ConcurrentHashMap<String, ByteArray>()
    override fun load(key: String): ByteArray? = secrets[key]
    override fun save(key: String, secret: ByteArray) { secrets[key] = secret }
    override fun delete(key: String) { secrets.remove(key) }
}

suspend fun until(what: String, check: suspend () -> Boolean) {
    val deadline = System.currentTimeMillis() + 60_000
    while (!check()) {
        if (System.currentTimeMillis() > deadline) throw AssertionError("timed out waiting for $what")
        delay(50)
    }
}

fun env(name: String): String = System.getenv(name) ?: throw IllegalStateException("$name is not set")

fun main() = runBlocking<Unit> {
    // RFC 4226 / 6238 vectors first, so a wrong code below is the server's fault, not ours.
    val rfc = "12345678901234567890".toByteArray()
    check(hotp(rfc, 0) == "755224") { "HOTP vector" }
    check(hotp(rfc, 1, 8) == "94287082") { "TOTP vector (T = 59 s)" }

    val secret = env("TOTP_SECRET_HEX").chunked(2).map { it.toInt(16).toByte() }.toByteArray()
    val event = env("EVENT_DOCUMENT")
    val tablet = openTablet(
        TabletConfig(
            dataDir = env("DATA_DIR"),
            serverUrls = listOf(env("SERVER_URL")),
            deviceName = "Kotlin tablet",
            extraCaPem = java.io.File(env("CA_PEM_FILE")).readText(),
        ),
        MemorySecureStore(),
    )
    check(tablet.sessionState() is SessionState.SignedOut) { "a new tablet is signed out" }

    try {
        tablet.signIn(env("EMAIL"), "not the password")
        throw AssertionError("a wrong password signed in")
    } catch (refused: TabletException.Refused) {
        check(refused.code == "invalid_credentials") { "code ${refused.code}" }
    }
    val step = tablet.signIn(env("EMAIL"), env("PASSWORD"))
    check(step is SignInStep.SecondFactorRequired) { "expected a second factor, got $step" }
    // The enrollment used the current step's code; the next step's is accepted once.
    val code = hotp(secret, System.currentTimeMillis() / 1000 / 30 + 1)
    val session = tablet.submitTotp((step as SignInStep.SecondFactorRequired).challenge, code)
    check(session.role == "staff") { "role ${session.role}" }

    val events = tablet.listEvents()
    check(events.any { it.documentId == event }) { "the assigned event is listed: $events" }
    // The event's key came with the list: its door may be chosen and a
    // signed code admitted while (or before) the event downloads.
    tablet.chooseEvent(event, "main")
    val signed = tablet.checkIn(env("SIGNED_CODE"), Direction.ENTRY)
    check(signed.answer == CheckInAnswer.ADMITTED) { "signed code: $signed" }
    check(signed.verifiedBySignature) { "vouched for by the event's key: $signed" }
    check(signed.attendee?.attendeeId == "late-guest-1") { "attendee: ${signed.attendee}" }
    val forged = env("SIGNED_CODE").dropLast(3) + (if (env("SIGNED_CODE").endsWith("AAA")) "BBB" else "AAA")
    val refused = tablet.checkIn(forged, Direction.ENTRY)
    check(refused.answer == CheckInAnswer.INVALID_SIGNATURE) { "altered code: $refused" }
    until("the event downloads") { tablet.checkinLists(event).isNotEmpty() }

    val first = tablet.checkIn("T-0007", Direction.ENTRY)
    check(first.answer == CheckInAnswer.ADMITTED_WITH_ATTENTION) { "first scan: $first" }
    check(first.attentionNote == "ID check: 18+") { "the note for staff: $first" }
    check(first.attendee?.name == "Guest 7") { "attendee: ${first.attendee}" }
    val again = tablet.checkIn("T-0007", Direction.ENTRY)
    check(again.answer == CheckInAnswer.ALREADY_CHECKED_IN) { "second scan: $again" }
    check(again.previous?.scanId == first.scanId) { "the previous scan is the first one" }
    val unknown = tablet.checkIn("NOT-A-TICKET", Direction.ENTRY)
    check(unknown.answer == CheckInAnswer.UNKNOWN_TICKET) { "unknown: $unknown" }
    try {
        tablet.annul("no-such-scan")
        throw AssertionError("annulled a scan that does not exist")
    } catch (e: TabletException.NotFound) {
        check(e.detail.contains("no-such-scan")) { e.detail }
    }
    // A door that opens later: a time rule answers, and nothing is recorded.
    val laterOpensAt = env("LATER_OPENS_AT_MS").toLong()
    val later = tablet.checkinLists(event).first { it.listId == "later" }
    check(later.validFromMs == laterOpensAt) { "the later door's rules: $later" }
    tablet.chooseEvent(event, "later")
    val early = tablet.checkIn("T-0008", Direction.ENTRY)
    check(early.answer == CheckInAnswer.NOT_YET_VALID) { "before the door opens: $early" }
    check(early.validFromMs == laterOpensAt && early.scanId == null) { "opens at: $early" }
    tablet.chooseEvent(event, "main")
    val counts = tablet.counts("main")
    check(counts.checkedIn == 1UL) { "counts: $counts" }

    until("the server confirms the scan") {
        val status = tablet.syncStatus()
        status.connected && status.pendingChanges == 0UL
    }
    println("signed ${signed.scanId}")
    println("scanned ${first.scanId} on device ${session.deviceId}")
    tablet.shutdown()
}
