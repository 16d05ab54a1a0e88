/*
 * HA behaviour through libproxy.so over the fault-injecting shim.
 *   hatest MODULE CONTROL LOG CASE
 * The config (tests/suites/65-ha.sh) has slots "ha" (failover: m1, m2),
 * "bal" (balance: m1, m2), "v-m1" and "v-m2" (one member each, used to put
 * the same keys on both tokens, as replication will). CONTROL is the shim's
 * control file, LOG its call log. Prints "ok ..." / "FAIL ..."; exit 1 on failure.
 */
#include "../tests/progs/testmod.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "shimctl.h"

/* --- keys: the same material on both tokens --- */

static EVP_PKEY *ec_key;
static unsigned char hmac_key[32], aes_key[32];
static const unsigned char ec_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                          0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_LABEL, (void *)label, strlen(label)}};
	CK_OBJECT_HANDLE h = 0;
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 0;
	f->C_FindObjects(s, &h, 1, &n);
	f->C_FindObjectsFinal(s);
	return n == 1 ? h : 0;
}

static void import_secret(CK_SESSION_HANDLE s, CK_KEY_TYPE kt, const char *label, CK_BYTE id,
                          const unsigned char *value, CK_ULONG len)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, &id, 1},
	    {CKA_VALUE, (void *)value, len},
	    {CKA_SIGN, &yes, sizeof(yes)},
	    {CKA_VERIFY, &yes, sizeof(yes)},
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_DECRYPT, &yes, sizeof(yes)},
	};
	CK_OBJECT_HANDLE h;
	CK_ULONG n = kt == CKK_AES ? 10 : 8;

	if (f->C_CreateObject(s, t, n, &h) != CKR_OK) {
		expect(0, "import %s", label);
		exit(1);
	}
}

static void import_ec(CK_SESSION_HANDLE s)
{
	if (!shim_import_ec(f, s, ec_key, ec_params, sizeof(ec_params), "ha-ec")) {
		expect(0, "import the EC key");
		exit(1);
	}
}

static void setup_keys(void)
{
	const char *tokens[] = {"v-m1", "v-m2"};

	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	RAND_bytes(hmac_key, sizeof(hmac_key));
	RAND_bytes(aes_key, sizeof(aes_key));
	for (int i = 0; i < 2; i++) {
		CK_SESSION_HANDLE s = open_on(tokens[i], 1);

		import_ec(s);
		import_secret(s, CKK_GENERIC_SECRET, "ha-hmac", 0xb1, hmac_key, sizeof(hmac_key));
		import_secret(s, CKK_AES, "ha-aes", 0xc1, aes_key, sizeof(aes_key));
		for (int k = 0; k < 5; k++) {
			char label[8];

			snprintf(label, sizeof(label), "find-%d", k);
			import_secret(s, CKK_AES, label, 0xf1, aes_key, sizeof(aes_key));
		}
		f->C_CloseSession(s);
	}
}

/* --- signing --- */

/* Raw ECDSA over a 32-byte hash, verified with OpenSSL against the imported key. */
static CK_RV sign_ec(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, int *verified)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char hash[32], sig[64], der[80], *p = der;
	CK_ULONG sig_len = sizeof(sig);
	ECDSA_SIG *es;
	EVP_PKEY_CTX *ctx;
	int der_len;
	CK_RV rv;

	*verified = 0;
	RAND_bytes(hash, sizeof(hash));
	rv = f->C_SignInit(s, &m, key);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, hash, sizeof(hash), sig, &sig_len);
	if (rv != CKR_OK || sig_len != 64)
		return rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	der_len = i2d_ECDSA_SIG(es, &p);
	ECDSA_SIG_free(es);
	ctx = EVP_PKEY_CTX_new(ec_key, NULL);
	*verified = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	            EVP_PKEY_verify(ctx, der, (size_t)der_len, hash, sizeof(hash)) == 1;
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

struct worker {
	pthread_t t;
	int n;
	long errors, bad;
	CK_RV first_error;
};

static int storm_done;

static void *storm_worker(void *arg)
{
	struct worker *w = arg;
	CK_SESSION_HANDLE s = 0;
	CK_OBJECT_HANDLE key = 0;

	/* Not open_on(): a worker must not exit() the process under the other threads. */
	if (!testmod_session(&mod, "ha", NULL, &s)) {
		w->errors = w->n;
		w->first_error = CKR_GENERAL_ERROR;
		__atomic_add_fetch(&storm_done, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	key = find_one(s, CKO_PRIVATE_KEY, "ha-ec");
	for (int i = 0; i < w->n; i++) {
		int ok;
		CK_RV rv = sign_ec(s, key, &ok);

		if (rv != CKR_OK) {
			if (w->errors++ == 0)
				w->first_error = rv;
		} else if (!ok) {
			w->bad++;
		}
	}
	f->C_CloseSession(s);
	__atomic_add_fetch(&storm_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* 4 threads, `total` signs, while the members fail by turns at random moments. */
static void case_storm(int threads, int total)
{
	struct worker w[16];
	CK_SESSION_HANDLE login = open_on("ha", 1);
	long errors = 0, bad = 0, failed_calls, signs_m1, signs_m2;
	CK_RV first = CKR_OK;
	unsigned flips = 0;
	long start = log_lines();

	for (int i = 0; i < threads; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].n = total / threads;
		pthread_create(&w[i].t, NULL, storm_worker, &w[i]);
	}
	/* Fail one member at a time, and only once the other has recovered. */
	while (__atomic_load_n(&storm_done, __ATOMIC_SEQ_CST) < threads) {
		const char *m = flips++ % 2 ? "m2" : "m1";
		char rule[64], met[64], other_ok[64];
		long mark;
		double t;

		snprintf(rule, sizeof(rule), "%s fail CKR_DEVICE_ERROR\n", m);
		snprintf(met, sizeof(met), "%s CKR_DEVICE_ERROR", m);
		snprintf(other_ok, sizeof(other_ok), "%s CKR_OK", flips % 2 ? "m2" : "m1");
		mark = log_lines();
		control(rule);
		msleep(5 + (unsigned)(rand() % 40));
		/*
		 * Under valgrind the calls are slow: keep the member failing until a
		 * signing call met it (the probe thread's own calls, settling a
		 * replication debt for instance, may meet it first), or the signing
		 * goes on on the other member (no session of it is on this one).
		 */
		for (t = now_s(); now_s() - t < 5 && log_count(mark, "C_Sign", met) == 0 &&
		                  log_count(mark, "C_Sign", other_ok) == 0 &&
		                  __atomic_load_n(&storm_done, __ATOMIC_SEQ_CST) < threads;)
			msleep(10);
		mark = log_lines();
		control("");
		/* Two good probes bring it back: wait for them (slow under valgrind), and a margin.
		 */
		for (t = now_s(); now_s() - t < 20 && log_count(mark, "C_GetSessionInfo", m) < 2;)
			msleep(20);
		msleep(100);
	}

	for (int i = 0; i < threads; i++)
		pthread_join(w[i].t, NULL);

	for (int i = 0; i < threads; i++) {
		if (errors == 0 && w[i].errors > 0)
			first = w[i].first_error;
		errors += w[i].errors;
		bad += w[i].bad;
	}
	failed_calls = log_count(start, "CKR_DEVICE_ERROR", NULL);
	signs_m1 = log_count(start, "C_Sign m1 CKR_OK", NULL);
	signs_m2 = log_count(start, "C_Sign m2 CKR_OK", NULL);
	expect(errors == 0,
	       "%d signs by %d threads: %ld errors reached the application (first 0x%lx)", total,
	       threads, errors, first);
	expect(bad == 0, "every signature verifies (%ld bad)", bad);
	expect(flips >= 2 && failed_calls > 0 && signs_m1 > 0 && signs_m2 > 0,
	       "members failed %u times (%ld injected errors); signs on m1: %ld, on m2: %ld", flips,
	       failed_calls, signs_m1, signs_m2);
	f->C_CloseSession(login);
}

static void case_failover(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1), s2;
	CK_OBJECT_HANDLE key = find_one(s, CKO_PRIVATE_KEY, "ha-ec");
	CK_SLOT_ID slots[8], ha;
	CK_ULONG n = 8;
	CK_TOKEN_INFO ti;
	long mark = log_lines();
	int ok;

	expect(sign_ec(s, key, &ok) == CKR_OK && ok, "sign on the primary");
	expect(log_count(mark, "C_Sign m1 CKR_OK", NULL) == 1, "served by m1");
	control("m1 fail CKR_DEVICE_ERROR\n");
	mark = log_lines();
	expect(sign_ec(s, key, &ok) == CKR_OK && ok, "sign while m1 fails: no error");
	expect(log_count(mark, "C_Sign m2 CKR_OK", NULL) == 1, "served by m2 (session moved)");
	expect(testmod_find_token(&mod, "ha", &ha) &&
	           f->C_GetSlotList(CK_TRUE, slots, &n) == CKR_OK,
	       "C_GetSlotList with a member down");
	expect(f->C_GetTokenInfo(ha, &ti) == CKR_OK && memcmp(ti.label, "ha ", 3) == 0,
	       "C_GetTokenInfo with a member down");
	control("");
	msleep(600); /* two probes */
	s2 = open_on("ha", 0);
	mark = log_lines();
	expect(sign_ec(s2, find_one(s2, CKO_PRIVATE_KEY, "ha-ec"), &ok) == CKR_OK && ok,
	       "new session after m1 recovered");
	expect(log_count(mark, "C_Sign m1 CKR_OK", NULL) == 1, "failback: new sessions go to m1");
	mark = log_lines();
	expect(sign_ec(s, key, &ok) == CKR_OK && log_count(mark, "C_Sign m2 CKR_OK", NULL) == 1,
	       "the moved session stays on m2 (no ping-pong)");
	f->C_CloseSession(s2);
	f->C_CloseSession(s);
}

static void case_alldown(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1), s2 = 0;
	CK_OBJECT_HANDLE key = find_one(s, CKO_PRIVATE_KEY, "ha-ec");
	CK_SLOT_ID ha, slots[8];
	CK_ULONG n = 8;
	double t;
	int ok;
	CK_RV rv = CKR_GENERAL_ERROR;

	testmod_find_token(&mod, "ha", &ha);
	control("m1 fail CKR_DEVICE_ERROR\nm2 fail CKR_DEVICE_ERROR\n");
	t = now_s();
	expect(sign_ec(s, key, &ok) == CKR_DEVICE_ERROR, "every member down: CKR_DEVICE_ERROR");
	expect(f->C_OpenSession(ha, CKF_SERIAL_SESSION, NULL, NULL, &s2) == CKR_DEVICE_ERROR,
	       "new sessions: CKR_DEVICE_ERROR");
	expect(now_s() - t < 1.0, "answered at once (%.3f s)", now_s() - t);
	expect(f->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK, "C_GetSlotList still answers");
	control("m2 ok\n");
	t = now_s();
	while (now_s() - t < 5 &&
	       (rv = f->C_OpenSession(ha, CKF_SERIAL_SESSION, NULL, NULL, &s2)) != CKR_OK)
		msleep(50);
	expect(rv == CKR_OK, "one member back: the slot recovers by itself (%.2f s)", now_s() - t);
	expect(sign_ec(s, key, &ok) == CKR_OK && ok, "the old session works again");
	f->C_CloseSession(s2);
	f->C_CloseSession(s);
	control("");
	msleep(600);
}

static void case_client_errors(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1), s2;
	CK_OBJECT_HANDLE key = find_one(s, CKO_PRIVATE_KEY, "ha-ec");
	CK_MECHANISM bogus = {0x7ffffff0UL, NULL, 0}, rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
	CK_BYTE sig[512];
	CK_ULONG len = sizeof(sig);
	long mark = log_lines();
	CK_RV rv;
	int ok;

	expect(f->C_SignInit(s, &bogus, key) == CKR_MECHANISM_INVALID,
	       "client error returned unchanged");
	/* SoftHSM2 answers CKR_GENERAL_ERROR here, a "server-side" code for a bad request. */
	rv = f->C_SignInit(s, &rsa, key);
	if (rv == CKR_OK)
		rv = f->C_Sign(s, (CK_BYTE_PTR) "x", 1, sig, &len);
	expect(rv != CKR_OK, "RSA mechanism on an EC key fails (0x%lx)", rv);
	expect(log_count(mark, "m2", NULL) == 0, "neither error moved the session to m2");
	rv = sign_ec(s, key, &ok);
	expect(rv == CKR_OK && log_count(mark, "C_Sign m1 CKR_OK", NULL) == 1,
	       "m1 still serves (0x%lx, %ld)", rv, log_count(mark, "C_Sign m1 CKR_OK", NULL));
	f->C_Logout(s);
	mark = log_lines();
	expect(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "0000", 4) == CKR_PIN_INCORRECT,
	       "wrong PIN: CKR_PIN_INCORRECT");
	expect(log_count(mark, "C_Login", NULL) == 1, "the PIN was tried once");
	s2 = open_on("ha", 0);
	expect(log_count(mark, "C_OpenSession m1", NULL) == 1, "m1 still first after a PIN error");
	f->C_CloseSession(s2);
	f->C_CloseSession(s);
}

static void case_balance(void)
{
	CK_SESSION_HANDLE s[4];
	long mark = log_lines();

	for (int i = 0; i < 4; i++)
		s[i] = open_on("bal", 0);
	expect(log_count(mark, "C_OpenSession m1 CKR_OK", NULL) == 2 &&
	           log_count(mark, "C_OpenSession m2 CKR_OK", NULL) == 2,
	       "balance: 4 sessions spread 2 + 2 over the members");
	for (int i = 0; i < 4; i++)
		f->C_CloseSession(s[i]);
}

static void case_multipart(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_HANDLE hk = find_one(s, CKO_SECRET_KEY, "ha-hmac");
	CK_OBJECT_HANDLE ak = find_one(s, CKO_SECRET_KEY, "ha-aes");
	CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0}, sha = {CKM_SHA256, NULL, 0};
	unsigned char iv[16] = {1, 2, 3}, mac[32], want[32], dig[32], out[256], ref[256];
	CK_MECHANISM cbc = {CKM_AES_CBC_PAD, iv, sizeof(iv)};
	const char *p1 = "first part, before the failure; ", *p2 = "second part, after it";
	CK_ULONG len = sizeof(mac), o1, o2, o3, total;
	unsigned int wlen = 0;
	EVP_CIPHER_CTX *cx;
	int l1, l2;

	/* HMAC: Init + Update on m1, m1 fails, Update + Final replayed on m2. */
	expect(f->C_SignInit(s, &hmac, hk) == CKR_OK &&
	           f->C_SignUpdate(s, (CK_BYTE_PTR)p1, strlen(p1)) == CKR_OK,
	       "HMAC started on m1");
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(f->C_SignUpdate(s, (CK_BYTE_PTR)p2, strlen(p2)) == CKR_OK &&
	           f->C_SignFinal(s, mac, &len) == CKR_OK,
	       "HMAC finished after failover");
	snprintf((char *)ref, sizeof(ref), "%s%s", p1, p2);
	HMAC(EVP_sha256(), hmac_key, sizeof(hmac_key), ref, strlen((char *)ref), want, &wlen);

	expect(len == 32 && memcmp(mac, want, 32) == 0, "replayed HMAC equals OpenSSL's");
	control("");
	msleep(600);

	/* Digest and AES-CBC encrypt, the failure between the updates. */
	s = open_on("ha", 0);
	expect(f->C_DigestInit(s, &sha) == CKR_OK &&
	           f->C_DigestUpdate(s, (CK_BYTE_PTR)p1, strlen(p1)) == CKR_OK,
	       "digest started");
	o1 = sizeof(out);
	expect(f->C_EncryptInit(s, &cbc, ak) != CKR_OPERATION_ACTIVE,
	       "encrypt alongside the digest");
	f->C_EncryptFinal(s, NULL, &o1); /* SoftHSM2 may refuse two operations: tidy up */
	control("m1 fail CKR_DEVICE_ERROR\n");
	len = sizeof(dig);
	expect(f->C_DigestUpdate(s, (CK_BYTE_PTR)p2, strlen(p2)) == CKR_OK &&
	           f->C_DigestFinal(s, dig, &len) == CKR_OK,
	       "digest finished after failover");
	{

		EVP_MD_CTX *md = EVP_MD_CTX_new();

		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		EVP_DigestUpdate(md, p1, strlen(p1));
		EVP_DigestUpdate(md, p2, strlen(p2));
		EVP_DigestFinal_ex(md, want, NULL);
		EVP_MD_CTX_free(md);
	}
	expect(len == 32 && memcmp(dig, want, 32) == 0, "replayed digest equals OpenSSL's");
	control("");
	msleep(600);

	s = open_on("ha", 0);
	o1 = sizeof(out);
	expect(f->C_EncryptInit(s, &cbc, ak) == CKR_OK &&
	           f->C_EncryptUpdate(s, (CK_BYTE_PTR)p1, strlen(p1), out, &o1) == CKR_OK,
	       "AES-CBC started on m1 (%lu bytes out)", o1);
	control("m1 fail CKR_DEVICE_ERROR\n");
	o2 = sizeof(out) - o1;
	o3 = 0;
	expect(f->C_EncryptUpdate(s, (CK_BYTE_PTR)p2, strlen(p2), out + o1, &o2) == CKR_OK &&
	           (o3 = sizeof(out) - o1 - o2, f->C_EncryptFinal(s, out + o1 + o2, &o3)) == CKR_OK,
	       "AES-CBC finished after failover");
	total = o1 + o2 + o3;
	cx = EVP_CIPHER_CTX_new();
	EVP_EncryptInit_ex(cx, EVP_aes_256_cbc(), NULL, aes_key, iv);
	EVP_EncryptUpdate(cx, ref, &l1, (const unsigned char *)p1, (int)strlen(p1));
	EVP_EncryptUpdate(cx, ref + l1, &l2, (const unsigned char *)p2, (int)strlen(p2));
	l1 += l2;
	EVP_EncryptFinal_ex(cx, ref + l1, &l2);
	l1 += l2;
	EVP_CIPHER_CTX_free(cx);
	expect(total == (CK_ULONG)l1 && memcmp(out, ref, total) == 0,
	       "replayed ciphertext equals OpenSSL's (%lu bytes)", total);
	control("");
	msleep(600);
}

static void case_find(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BYTE id = 0xf1;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE got[16];
	CK_ULONG n1 = 0, n2 = 0;
	int dup = 0;

	expect(f->C_FindObjectsInit(s, t, 2) == CKR_OK &&
	           f->C_FindObjects(s, got, 2, &n1) == CKR_OK && n1 == 2,
	       "find: 2 of 5 keys from m1");
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(f->C_FindObjects(s, got + n1, 14, &n2) == CKR_OK, "find goes on after failover");
	f->C_FindObjectsFinal(s);
	for (CK_ULONG i = 0; i < n1 + n2; i++)
		for (CK_ULONG j = i + 1; j < n1 + n2; j++)
			dup |= got[i] == got[j];
	expect(n1 + n2 == 5 && !dup, "all 5 keys, none twice (%lu + %lu)", n1, n2);
	control("");
	msleep(600);
	f->C_CloseSession(s);
}

struct hung {
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
	int ok;
	double took;
};

static void *hung_sign(void *arg)
{
	struct hung *h = arg;
	double t = now_s();

	h->rv = sign_ec(h->s, h->key, &h->ok);
	h->took = now_s() - t;
	return NULL;
}

/*
 * Slot "hang" has call_timeout 300ms: a member whose calls hang is abandoned:
 * the thread inside the hung call gets its answer from m2, and the others
 * leave m1 too.
 */
static void case_hang(void)
{
	struct hung a = {0};
	CK_SESSION_HANDLE b = open_on("hang", 1), c2;
	CK_OBJECT_HANDLE key = find_one(b, CKO_PRIVATE_KEY, "ha-ec");
	pthread_t t;
	long mark;
	double start;
	int ok;

	a.s = open_on("hang", 0);
	a.key = key;
	expect(sign_ec(a.s, key, &ok) == CKR_OK && sign_ec(b, key, &ok) == CKR_OK,
	       "two sessions sign on m1");
	control("m1 hang 5 fn C_Sign\n");
	pthread_create(&t, NULL, hung_sign, &a);
	msleep(700); /* past call_timeout, and a watchdog scan */
	mark = log_lines();
	start = now_s();
	expect(sign_ec(b, key, &ok) == CKR_OK && ok, "another session signs while m1 hangs");
	expect(now_s() - start < 1.0 && log_count(mark, "C_Sign m2 CKR_OK", NULL) == 1,
	       "on m2, without waiting for the hung member (%.3f s)", now_s() - start);
	mark = log_lines();
	c2 = open_on("hang", 0);
	expect(log_count(mark, "C_OpenSession m2", NULL) == 1, "new sessions go to m2");

	pthread_join(t, NULL);
	expect(a.rv == CKR_OK && a.ok, "the thread inside the hung call got its signature");
	expect(a.took < 2.0, "from m2, about call_timeout later, while m1 still hangs (%.2f s)",
	       a.took);
	control("");
	f->C_CloseSession(c2);
	f->C_CloseSession(a.s);
	f->C_CloseSession(b);
	msleep(600);
}

static void case_objects(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1);
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_TOKEN, &no, sizeof(no)},
	                    {CKA_LABEL, "sess", 4},
	                    {CKA_VALUE, "v", 1}};
	CK_OBJECT_HANDLE obj = 0, key = find_one(s, CKO_SECRET_KEY, "ha-aes"), gen = 0;
	CK_BYTE buf[64];
	CK_ATTRIBUTE get = {CKA_LABEL, buf, sizeof(buf)};
	CK_MECHANISM kg = {CKM_AES_KEY_GEN, NULL, 0};
	CK_ULONG vlen = 32;
	CK_ATTRIBUTE gt[] = {{CKA_VALUE_LEN, &vlen, sizeof(vlen)}};

	expect(f->C_CreateObject(s, t, 4, &obj) == CKR_OK, "session object on m1");
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(f->C_GenerateKey(s, &kg, gt, 1, &gen) == CKR_OK,
	       "session key generation while m1 fails: made again on m2");
	f->C_DestroyObject(s, gen);
	expect(f->C_GetAttributeValue(s, obj, &get, 1) == CKR_OBJECT_HANDLE_INVALID,
	       "session object of the failed member: CKR_OBJECT_HANDLE_INVALID");
	get.ulValueLen = sizeof(buf);
	expect(f->C_GetAttributeValue(s, key, &get, 1) == CKR_OK && get.ulValueLen == 6,
	       "token key re-found on m2 by class, id and label");
	expect(f->C_GenerateKey(s, &kg, gt, 1, &gen) == CKR_OK, "key generation works on m2");
	f->C_DestroyObject(s, gen);
	control("");
	msleep(600);
	f->C_CloseSession(s);
}

/* A token generic-secret key with that label and id, through a session. */
static CK_RV make_key(CK_SESSION_HANDLE s, const char *label, const char *id, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                    {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                    {CKA_TOKEN, &yes, sizeof(yes)},
	                    {CKA_SENSITIVE, &no, sizeof(no)},
	                    {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	                    {CKA_SIGN, &yes, sizeof(yes)},
	                    {CKA_LABEL, (void *)label, strlen(label)},
	                    {CKA_ID, (void *)id, strlen(id)},
	                    {CKA_VALUE, "v1", 2}};

	return f->C_CreateObject(s, t, 9, out);
}

static CK_ULONG count_label(CK_SESSION_HANDLE s, const char *label)
{
	CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
	CK_OBJECT_HANDLE h[4];
	CK_ULONG n = 0;

	if (f->C_FindObjectsInit(s, &t, 1) != CKR_OK)
		return 99;
	f->C_FindObjects(s, h, 4, &n);
	f->C_FindObjectsFinal(s);
	return n;
}

/* The primary back, and a fresh session on it. */
static CK_SESSION_HANDLE primary_again(void)
{
	control("");
	msleep(600); /* two probes */
	return open_on("ha", 1);
}

/* Calls whose outcome a member failure makes unknown (p11proxy(7), the failover table). */
static void case_unknown(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1), m2 = open_on("v-m2", 1);
	CK_OBJECT_HANDLE h = 0, on_m2 = 0;
	CK_BYTE buf[16];
	CK_BBOOL no = CK_FALSE, got = CK_TRUE;
	CK_ATTRIBUTE get = {CKA_VALUE, buf, sizeof(buf)}, set = {CKA_SIGN, &no, sizeof(no)};
	CK_ATTRIBUTE get_sign = {CKA_SIGN, &got, sizeof(got)};
	long mark;
	CK_RV rv;

	/* A token object named by CKA_ID, not on the survivor: safe to repeat. */
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(make_key(s, "unk-a", "ida", &h) == CKR_DEVICE_ERROR,
	       "token object creation while m1 fails: CKR_DEVICE_ERROR");
	expect(count_label(m2, "unk-a") == 0, "not made on m2 behind the application's back");
	rv = make_key(s, "unk-a", "ida", &h);
	expect(rv == CKR_OK && count_label(m2, "unk-a") == 1,
	       "repeated by the application: made once, on m2 (0x%lx)", rv);
	f->C_CloseSession(s);

	/* The HSMs had copied it (made on m2 directly): found by CKA_ID and adopted. */
	s = primary_again();
	rv = make_key(m2, "unk-b", "idb", &on_m2);
	expect(rv == CKR_OK, "object copied to m2 beforehand (0x%lx)", rv);
	/* m1 answers the proxy's look-up before the call (3 calls), then fails. */
	control("m1 fail CKR_DEVICE_ERROR after 3\n");
	expect(make_key(s, "unk-b", "idb", &h) == CKR_OK, "creation while m1 fails: adopted");
	get.ulValueLen = sizeof(buf);
	expect(f->C_GetAttributeValue(s, h, &get, 1) == CKR_OK && get.ulValueLen == 2 &&
	           count_label(m2, "unk-b") == 1,
	       "the handle names m2's object; no second copy");
	f->C_CloseSession(s);

	/* Destroy: the object goes on the member the session moved to as well. */
	s = primary_again();
	h = 0;
	expect(make_key(m2, "unk-c", "idc", &on_m2) == CKR_OK, "object on m2");
	{
		CK_SESSION_HANDLE m1 = open_on("v-m1", 1);

		expect(make_key(m1, "unk-c", "idc", &on_m2) == CKR_OK, "and on m1");
		f->C_CloseSession(m1);
	}
	h = 0;
	{
		CK_ATTRIBUTE t = {CKA_LABEL, "unk-c", 5};
		CK_ULONG n = 0;

		f->C_FindObjectsInit(s, &t, 1);
		f->C_FindObjects(s, &h, 1, &n);
		f->C_FindObjectsFinal(s);
	}
	control("m1 fail CKR_DEVICE_ERROR\n");
	mark = log_lines();
	expect(h != 0 && f->C_DestroyObject(s, h) == CKR_OK, "destroy while m1 fails: CKR_OK");
	expect(log_count(mark, "C_DestroyObject m2 CKR_OK", NULL) == 1 &&
	           count_label(m2, "unk-c") == 0,
	       "destroyed on m2");
	f->C_CloseSession(s);

	/* Set-attribute: made on the member the session moved to. */
	s = primary_again();
	expect(make_key(m2, "unk-d", "idd", &on_m2) == CKR_OK, "object on m2");
	{
		CK_SESSION_HANDLE m1 = open_on("v-m1", 1);

		expect(make_key(m1, "unk-d", "idd", &h) == CKR_OK, "and on m1");
		f->C_CloseSession(m1);
	}
	{
		CK_ATTRIBUTE t = {CKA_LABEL, "unk-d", 5};
		CK_ULONG n = 0;

		h = 0;
		f->C_FindObjectsInit(s, &t, 1);
		f->C_FindObjects(s, &h, 1, &n);
		f->C_FindObjectsFinal(s);
	}
	control("m1 fail CKR_DEVICE_ERROR\n");
	mark = log_lines();
	expect(h != 0 && f->C_SetAttributeValue(s, h, &set, 1) == CKR_OK,
	       "set-attribute while m1 fails: CKR_OK");
	/* Slot v-m2 reports its own virtual key's permissions: the shim log shows the HSM. */
	expect(log_count(mark, "C_SetAttributeValue m2 CKR_OK", NULL) == 1,
	       "the change was made on m2 (write_back)");
	rv = f->C_GetAttributeValue(s, h, &get_sign, 1);
	expect(rv == CKR_OK && got == CK_FALSE, "and the virtual key says so (0x%lx)", rv);
	f->C_CloseSession(s);
	f->C_CloseSession(m2);
	control("");
	msleep(600);
}

/* A change through the slot reaches every member's copy; a new label is the identity. */
static void case_rename(void)
{
	CK_SESSION_HANDLE s = open_on("ha", 1), m1 = open_on("v-m1", 1), m2 = open_on("v-m2", 1);
	CK_OBJECT_HANDLE h = 0, unused;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE set[] = {{CKA_LABEL, "ren-new", 7}, {CKA_SIGN, &no, sizeof(no)}};
	CK_BYTE buf[32];
	CK_ATTRIBUTE get = {CKA_LABEL, buf, sizeof(buf)};
	CK_ATTRIBUTE t = {CKA_LABEL, "ren-old", 7};
	CK_ULONG n = 0;

	expect(make_key(m1, "ren-old", "idr", &unused) == CKR_OK &&
	           make_key(m2, "ren-old", "idr", &unused) == CKR_OK,
	       "the same key on both members");
	f->C_FindObjectsInit(s, &t, 1);
	f->C_FindObjects(s, &h, 1, &n);
	f->C_FindObjectsFinal(s);
	expect(n == 1 && f->C_SetAttributeValue(s, h, set, 2) == CKR_OK,
	       "label and CKA_SIGN changed through the slot (on m1)");
	expect(count_label(m2, "ren-new") == 1 && count_label(m2, "ren-old") == 0,
	       "m2's copy changed too");
	control("m1 fail CKR_DEVICE_ERROR\n");
	expect(f->C_GetAttributeValue(s, h, &get, 1) == CKR_OK && get.ulValueLen == 7 &&
	           memcmp(buf, "ren-new", 7) == 0,
	       "after m1 fails, the handle is found on m2 by its new label");
	control("");
	msleep(600);
	f->C_CloseSession(m2);
	f->C_CloseSession(m1);
	f->C_CloseSession(s);
}

int main(int argc, char **argv)
{
	const char *c;

	if (argc < 5) {
		fprintf(stderr, "usage: hatest MODULE CONTROL LOG CASE\n");
		return 2;
	}
	control_path = argv[2];
	log_path = argv[3];
	c = argv[4];
	srand((unsigned)getpid());
	control("");
	if (!testmod_load(&mod, argv[1]))
		return 1;
	f = mod.f;
	setup_keys();
	if (strcmp(c, "storm") == 0)
		case_storm(4, argc > 5 ? atoi(argv[5]) : 10000);
	else if (strcmp(c, "failover") == 0)
		case_failover();
	else if (strcmp(c, "alldown") == 0)
		case_alldown();
	else if (strcmp(c, "client") == 0)
		case_client_errors();
	else if (strcmp(c, "balance") == 0)
		case_balance();
	else if (strcmp(c, "multipart") == 0)
		case_multipart();
	else if (strcmp(c, "find") == 0)
		case_find();
	else if (strcmp(c, "objects") == 0)
		case_objects();
	else if (strcmp(c, "hang") == 0)
		case_hang();
	else if (strcmp(c, "unknown") == 0)
		case_unknown();
	else if (strcmp(c, "rename") == 0)
		case_rename();

	else {
		fprintf(stderr, "unknown case %s\n", c);
		return 2;
	}
	testmod_unload(&mod);
	EVP_PKEY_free(ec_key);
	return checks_verdict();
}
