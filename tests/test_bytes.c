/*
** test_bytes.c — the byte helpers every format decoder uses (src/bytes.h):
** key_order against its definition (memcmp, then the shorter key first),
** copy_short within its n bytes, varints round trip and refuse what is cut
** off or does not fit 64 bits. Their fast paths (words compared and copied
** in registers, a one-byte varint without the loop) are where a mistake
** would hide: each is checked at every length and position around them.
**
** Pure functions: no database, no thread.
*/
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "testutil.h"

TestSuite(bytes, .timeout = 60);

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void) { return tu_xorshift(&rnd_state); }

/* key_order's definition: bytewise, a key that is a prefix of another first. */
static int reference_order(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
  int c = tu_keycmp(a, alen, b, blen);
  return (c > 0) - (c < 0);
}

static int sign(int x) { return (x > 0) - (x < 0); }

/* Every pair of lengths up to 40 (across the 8-byte words and the 32-byte
** switch to memcmp), the keys equal but for one byte at every position, or
** equal: the same order as the definition. */
Test(bytes, key_order_is_bytewise_then_shorter_first)
{
  uint8_t a[48], b[48];
  for (size_t alen = 0; alen <= 40; alen++)
    for (size_t blen = 0; blen <= 40; blen++)
      for (size_t at = 0; at <= 40; at++)
        for (int how = 0; how < 3; how++) {
          for (size_t i = 0; i < sizeof a; i++)
            a[i] = b[i] = (uint8_t)(0x41 + i);
          if (at < alen && at < blen) {
            if (how == 0)
              b[at] = (uint8_t)(a[at] + 1);      /* a before b here */
            else if (how == 1)
              b[at] = (uint8_t)(a[at] - 1);
            else
              b[at] = (uint8_t)(a[at] ^ 0x80);   /* the top bit: unsigned bytes */
          }
          int want = reference_order(a, alen, b, blen), got = key_order(a, alen, b, blen);
          cr_assert_eq(sign(got), want, "key_order of %zu and %zu bytes differing at %zu (%d): %d, want %d", alen,
                       blen, at, how, got, want);
        }
}

Test(bytes, key_order_agrees_with_its_definition_on_random_keys)
{
  uint8_t a[80], b[80];
  for (int i = 0; i < 200000; i++) {
    size_t alen = rnd() % 70, blen = rnd() % 70;
    for (size_t j = 0; j < sizeof a; j++)
      a[j] = b[j] = (uint8_t)(rnd() % 3);      /* few symbols: long common prefixes */
    for (size_t j = 0; j < sizeof b; j++)
      if (rnd() % 8 == 0)
        b[j] = (uint8_t)rnd();
    int want = reference_order(a, alen, b, blen);
    cr_assert_eq(sign(key_order(a, alen, b, blen)), want, "pair %d (%zu and %zu bytes)", i, alen, blen);
    cr_assert_eq(sign(key_order(b, blen, a, alen)), -want, "pair %d reversed", i);
  }
}

/* copy_short copies exactly n bytes: the bytes around the destination stay
** as they were, whatever n (its word moves cover 8 to 16). */
Test(bytes, copy_short_writes_exactly_its_bytes)
{
  uint8_t src[64], dst[96];
  for (size_t i = 0; i < sizeof src; i++)
    src[i] = (uint8_t)(i * 7 + 1);
  for (size_t n = 0; n <= 40; n++)
    for (size_t off = 0; off < 8; off++) {
      memset(dst, 0xEE, sizeof dst);
      copy_short(dst + 16 + off, src + off, n);
      for (size_t i = 0; i < sizeof dst; i++) {
        int inside = i >= 16 + off && i < 16 + off + n;
        uint8_t want = inside ? src[off + (i - 16 - off)] : 0xEE;
        cr_assert_eq(dst[i], want, "copy of %zu bytes at offset %zu: byte %zu is %#x, want %#x", n, off, i, dst[i],
                     want);
      }
    }
}

/* Every value around each length boundary round trips, read at the end of
** its buffer (so a read past it would be out of bounds under ASan). */
Test(bytes, varints_round_trip)
{
  for (unsigned bits = 0; bits <= 64; bits++)
    for (int delta = -2; delta <= 2; delta++) {
      uint64_t v = bits == 64 ? UINT64_MAX + (uint64_t)(delta > 0 ? 0 : delta)
                              : (bits ? (1ull << bits) : 0) + (uint64_t)delta;
      uint8_t buf[16];
      size_t len = put_varint(buf, v);
      cr_assert_eq(len, varint_len(v), "put_varint(%llu) wrote %zu bytes, varint_len says %zu",
                   (unsigned long long)v, len, varint_len(v));
      uint8_t *exact = malloc(len);
      memcpy(exact, buf, len);
      size_t pos = 0;
      uint64_t got = 0;
      cr_assert_eq(get_varint(exact, len, &pos, &got), 1, "get_varint of %llu", (unsigned long long)v);
      cr_assert(got == v && pos == len, "%llu read back as %llu, %zu of %zu bytes", (unsigned long long)v,
                (unsigned long long)got, pos, len);
      for (size_t cut = 0; cut < len; cut++) {
        pos = 0;
        cr_assert_eq(get_varint(exact, cut, &pos, &got), 0, "%llu cut to %zu of %zu bytes was read",
                     (unsigned long long)v, cut, len);
      }
      free(exact);
    }
}

Test(bytes, varints_that_do_not_fit_64_bits_are_refused)
{
  uint8_t eleven[11];
  memset(eleven, 0x80, sizeof eleven);
  eleven[10] = 0x01;
  size_t pos = 0;
  uint64_t v;
  cr_assert_eq(get_varint(eleven, sizeof eleven, &pos, &v), 0, "an 11-byte varint was read");
  uint8_t ten[10];
  memset(ten, 0xFF, sizeof ten);
  ten[9] = 0x02;                                  /* bit 64 */
  pos = 0;
  cr_assert_eq(get_varint(ten, sizeof ten, &pos, &v), 0, "a varint of 65 bits was read");
  uint8_t one[1] = { 0x05 };
  pos = 1;
  cr_assert_eq(get_varint(one, 1, &pos, &v), 0, "a varint read at the end of its buffer");
  pos = 0;
  cr_assert(get_varint(one, 1, &pos, &v) == 1 && v == 5 && pos == 1, "the one-byte varint 5");
}
