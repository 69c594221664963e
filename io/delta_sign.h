/* Signing a delta file in place (deltasoup sign). The content hash is
 * recomputed from the data first (a file whose data no longer matches its
 * recorded hash is not signed); the signature attributes go into a copy
 * (NAME.tmp) that replaces the file by rename, so a reader never sees a
 * half-signed file and the tensor data, hence content_sha256, is unchanged.
 * Serial: one process (rank 0) calls it. */
#ifndef DS_IO_DELTA_SIGN_H
#define DS_IO_DELTA_SIGN_H
#include "io/h5_delta.h"
#include "src/sign.h"

/* Sign path (its metadata m, as ds_delta_open read it) with the secret key
 * sk: root attributes signature, signer_public_key and signature_scheme.
 * sig_hex receives the signature. 0 or a ds_err code. Needs ds_sign_init. */
int ds_delta_sign_file(const char *path, const ds_delta_meta *m, const unsigned char sk[DS_SIGN_SK],
                       char sig_hex[129]);
#endif
