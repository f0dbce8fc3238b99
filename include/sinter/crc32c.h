/*
 * CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78): the checksum on every Sinter
 * wire frame and on-disk record. Chosen over CRC32 (zlib) because it detects more error patterns in
 * short records and has hardware support (SSE4.2 crc32 instruction) we can adopt later without a
 * format change.
 */
#ifndef SINTER_CRC32C_H
#define SINTER_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Extends crc (0 to start) over len bytes at buf and returns the new value, so a record can be
 * checksummed in pieces: sinter_crc32c(sinter_crc32c(0, a, n), b, m) == crc of a||b.
 * Ownership: reads buf only. buf may be NULL when len is 0. */
uint32_t sinter_crc32c(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SINTER_CRC32C_H */
