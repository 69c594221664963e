/* libFuzzer target: the key files of signing (src/sign.c;
 * scripts/fuzz.sh trusted_keys): the --trusted-keys file
 * (ds_sign_trusted_load) and the secret key file (ds_sign_read_secret, the
 * same bytes in a mode-600 file). Each loads or is refused with
 * DS_EXIT_INPUT; loaded keys have owners shorter than DS_NAME_MAX.
 * tests/fuzz/replay runs tests/fuzz/trusted_keys_corpus. */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "src/ds.h"
#include "src/sign.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (ds_sign_init() != 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_trusted_key *keys;
    int n;
    int rc = ds_sign_trusted_load(fuzz_file(0, data, size, ".keys"), &keys, &n);
    if (rc) {
        if (rc != DS_EXIT_INPUT || keys || n) abort();
    } else {
        if (n < 1) abort();
        for (int i = 0; i < n; i++)
            if (strnlen(keys[i].owner, DS_NAME_MAX) >= DS_NAME_MAX) abort();
        free(keys);
    }
    const char *sec = fuzz_file(1, data, size, ".key");
    if (chmod(sec, 0600) != 0) abort();
    unsigned char sk[DS_SIGN_SK];
    rc = ds_sign_read_secret(sec, sk);
    if (rc && rc != DS_EXIT_INPUT) abort();
    return 0;
}
