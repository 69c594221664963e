/* Unit tests of src/sign.c: RFC 8032 test vector 1 (Ed25519), the signed
 * statement's exact text, key decoding, trusted-keys files, the trust
 * filter's verdicts. */
#include "config.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "src/sign.h"
#include "tests/unit/check_main.h"

static void hex2bin(const char *h, unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) sscanf(h + 2 * i, "%2hhx", &b[i]);
}

START_TEST(test_rfc8032_vector1)
{
    /* RFC 8032 section 7.1, TEST 1: empty message. */
    const char *seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const char *pk = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const char *sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
                      "d25bf5f0595bbe24655141438e7a100b";
    unsigned char sk[DS_SIGN_SK], p[DS_SIGN_PK], s[DS_SIGN_SIG], want[DS_SIGN_SIG];
    ck_assert_int_eq(ds_sign_init(), 0);
    hex2bin(seed, sk, 32);
    hex2bin(pk, sk + 32, 32);
    hex2bin(pk, p, 32);
    hex2bin(sig, want, 64);
    ds_sign_detached(sk, "", 0, s);
    ck_assert_mem_eq(s, want, 64);
    ck_assert_int_eq(ds_sign_verify(p, "", 0, s), 0);
    s[5] ^= 1;
    ck_assert_int_eq(ds_sign_verify(p, "", 0, s), -1);
    char hex[129];
    ds_sign_hex(want, 64, hex);
    ck_assert_str_eq(hex, sig);
}
END_TEST

START_TEST(test_statement)
{
    char buf[1024];
    size_t n = ds_sign_statement("ab", "cd", "alice", 1, 0.5, 1e-5, buf, sizeof buf);
    const char *want = "deltasoup.bitdelta.signature.v1\ncontent_sha256=ab\nbase_sha256=cd\nowner=alice\n"
                       "dp_epsilon=0.5\ndp_delta=1.0000000000000001e-05\n";
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(n, strlen(want));
    ds_sign_statement("ab", "cd", "bob", 0, 0, 0, buf, sizeof buf);
    ck_assert(strstr(buf, "owner=bob\ndp_epsilon=none\ndp_delta=none\n") != NULL);
}
END_TEST

START_TEST(test_decode)
{
    unsigned char b[32], want[32];
    hex2bin("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", want, 32);
    ck_assert_int_eq(ds_sign_decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", b, 32), 0);
    ck_assert_mem_eq(b, want, 32);
    /* the same key in standard base64 (python3 -c 'import base64; ...'), with and without padding */
    ck_assert_int_eq(ds_sign_decode("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", b, 32), 0);
    ck_assert_mem_eq(b, want, 32);
    ck_assert_int_eq(ds_sign_decode("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo", b, 32), 0);
    ck_assert_int_eq(ds_sign_decode("d75a98", b, 32), -1);
    ck_assert_int_eq(ds_sign_decode("zz5a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", b, 32), -1);
    ck_assert_int_eq(ds_sign_decode("", b, 32), -1);
}
END_TEST

START_TEST(test_trusted_file)
{
    char path[] = "/tmp/ds-test-keys-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# keys\n\n  d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\n"
               "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo= alice\n");
    fclose(f);
    ds_trusted_key *k;
    int n;
    ck_assert_int_eq(ds_sign_trusted_load(path, &k, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(k[0].owner, "");
    ck_assert_str_eq(k[1].owner, "alice");
    ck_assert_mem_eq(k[0].pk, k[1].pk, 32);
    free(k);
    f = fopen(path, "w");
    fprintf(f, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\nnot-a-key\n");
    fclose(f);
    ck_assert_int_eq(ds_sign_trusted_load(path, &k, &n), DS_EXIT_INPUT);
    ck_assert(strstr(ds_errmsg(), ":2: not an Ed25519 public key") != NULL);
    f = fopen(path, "w");
    fprintf(f, "# nothing\n");
    fclose(f);
    ck_assert_int_eq(ds_sign_trusted_load(path, &k, &n), DS_EXIT_INPUT);
    ck_assert(strstr(ds_errmsg(), "no trusted keys") != NULL);
    unlink(path);
}
END_TEST

START_TEST(test_judge)
{
    /* the RFC 8032 key signs alice's statement */
    unsigned char sk[DS_SIGN_SK], sig[DS_SIGN_SIG];
    ck_assert_int_eq(ds_sign_init(), 0);
    hex2bin("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", sk, 32);
    hex2bin("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", sk + 32, 32);
    ds_sign_claim c = {"ab", "cd", "alice", 1, 0.5, 1e-5};
    char msg[1024], sig_hex[129], pk_hex[65], why[200];
    size_t len = ds_sign_statement(c.content_sha256, c.base_sha256, c.owner, c.has_dp, c.dp_epsilon, c.dp_delta, msg,
                                   sizeof msg);
    ds_sign_detached(sk, msg, len, sig);
    ds_sign_hex(sig, DS_SIGN_SIG, sig_hex);
    ds_sign_hex(sk + 32, DS_SIGN_PK, pk_hex);
    ds_trusted_key k[2];
    memset(k, 0, sizeof k);
    memcpy(k[0].pk, sk + 32, DS_SIGN_PK);
    memcpy(k[1].pk, sk + 32, DS_SIGN_PK);
    ds_sign_judge(k, 1, sig_hex, pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, ""); /* a key with no owner signs for anyone */
    strcpy(k[0].owner, "bob");
    ds_sign_judge(k, 1, sig_hex, pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, "key d75a980182b10ab7... is not trusted for owner 'alice'");
    strcpy(k[1].owner, "alice"); /* the same key listed again, for alice */
    ds_sign_judge(k, 2, sig_hex, pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, "");
    k[0].pk[0] ^= 1;
    ds_sign_judge(k, 1, sig_hex, pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, "signer d75a980182b10ab7... is not a trusted key");
    ds_sign_judge(k, 2, NULL, "", &c, why, sizeof why);
    ck_assert_str_eq(why, "unsigned");
    ds_sign_judge(k, 2, "zz", pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, "malformed signature attributes");
    c.dp_epsilon = 8; /* a claim that is not the signed one */
    ds_sign_judge(k, 2, sig_hex, pk_hex, &c, why, sizeof why);
    ck_assert_str_eq(why, "bad signature");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sign");
    tcase_add_test(ds_check_case(s, "ed25519", 0), test_rfc8032_vector1);
    tcase_add_test(ds_check_case(s, "statement", 0), test_statement);
    TCase *keys = ds_check_case(s, "keys", 0);
    tcase_add_test(keys, test_decode);
    tcase_add_test(keys, test_trusted_file);
    tcase_add_test(ds_check_case(s, "trust", 0), test_judge);
    return ds_check_run(s);
}
