/*
 * SHA-256 of 16 equal-length messages at once, in one of two ways:
 *
 * - one per 32-bit lane of the AVX-512 registers (the "multi-buffer" way):
 *   4 KiB pages are hashed 16 at a time, about twice as fast per core as one
 *   page at a time with the SHA extensions (3.1-3.4 GB/s against 1.5 there);
 * - on a CPU without AVX-512 but with the SHA extensions (SHA-NI: AMD Zen,
 *   recent Intel), four messages at a time, their rounds interleaved: one
 *   message's rounds wait on each other (each sha256rnds2 needs the last
 *   one's result), four independent ones keep the unit busy. Measured per
 *   CPU-second on 4 KiB pages on an AMD EPYC without AVX-512: 1.33 GB/s one
 *   at a time (as OpenSSL and Bun), 2.0 two, 2.25 three, 2.4 four.
 *
 * Checkpoints and restores hash every page of a pod's memory, so this is
 * most of their CPU.
 *
 * Built by build.ts (gcc -O3 -shared -fPIC) and embedded in the binary; used
 * through bun:ffi by the hashing threads (src/store/sha256x16.ts) when the CPU
 * has AVX-512F and AVX-512BW, or SHA-NI (with SSSE3 and SSE4.1), and checked
 * against Bun's SHA-256 by the tests.
 * Plain C with intrinsics, no dependencies; the lanes are independent, so
 * there is no shared state and it is safe on any thread.
 */
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

static const uint32_t K[64] = {
  0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
  0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
  0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
  0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
  0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
  0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
  0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
  0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
static const uint32_t H0[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};

#define ROR(x,n) _mm512_ror_epi32((x),(n))
/* ternlog imm8: f(a,b,c) truth table */
#define XOR3(a,b,c) _mm512_ternarylogic_epi32((a),(b),(c),0x96)
#define CH(e,f,g) _mm512_ternarylogic_epi32((e),(f),(g),0xCA)
#define MAJ(a,b,c) _mm512_ternarylogic_epi32((a),(b),(c),0xE8)

__attribute__((target("avx512f,avx512bw")))
static inline void compress16(__m512i st[8], __m512i W[16]) {
  __m512i a=st[0],b=st[1],c=st[2],d=st[3],e=st[4],f=st[5],g=st[6],h=st[7];
  __m512i w[16];
  for (int t = 0; t < 16; t++) w[t] = W[t];
  for (int t = 0; t < 64; t++) {
    __m512i wt;
    if (t < 16) wt = w[t];
    else {
      __m512i w15 = w[(t-15)&15], w2 = w[(t-2)&15];
      __m512i s0 = XOR3(ROR(w15,7), ROR(w15,18), _mm512_srli_epi32(w15,3));
      __m512i s1 = XOR3(ROR(w2,17), ROR(w2,19), _mm512_srli_epi32(w2,10));
      wt = _mm512_add_epi32(_mm512_add_epi32(w[t&15], s0), _mm512_add_epi32(w[(t-7)&15], s1));
      w[t&15] = wt;
    }
    __m512i S1 = XOR3(ROR(e,6), ROR(e,11), ROR(e,25));
    __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(h, S1), _mm512_add_epi32(CH(e,f,g), _mm512_add_epi32(_mm512_set1_epi32(K[t]), wt)));
    __m512i S0 = XOR3(ROR(a,2), ROR(a,13), ROR(a,22));
    __m512i t2 = _mm512_add_epi32(S0, MAJ(a,b,c));
    h=g; g=f; f=e; e=_mm512_add_epi32(d,t1); d=c; c=b; b=a; a=_mm512_add_epi32(t1,t2);
  }
  st[0]=_mm512_add_epi32(st[0],a); st[1]=_mm512_add_epi32(st[1],b); st[2]=_mm512_add_epi32(st[2],c); st[3]=_mm512_add_epi32(st[3],d);
  st[4]=_mm512_add_epi32(st[4],e); st[5]=_mm512_add_epi32(st[5],f); st[6]=_mm512_add_epi32(st[6],g); st[7]=_mm512_add_epi32(st[7],h);
}

/* 16 messages of `len` bytes (len % 64 == 0), lane i at base + i*stride; digests to out + i*32. */
__attribute__((target("avx512f,avx512bw")))
static void sha256_x16_avx512(const uint8_t *base, uint32_t stride, uint32_t len, uint8_t *out) {
  const __m512i bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
  __m512i st[8];
  for (int i = 0; i < 8; i++) st[i] = _mm512_set1_epi32(H0[i]);
  __m512i lane = _mm512_mullo_epi32(_mm512_setr_epi32(0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15), _mm512_set1_epi32(stride));
  __m512i W[16];
  for (uint32_t blk = 0; blk < len; blk += 64) {
    for (int t = 0; t < 16; t++) {
      __m512i idx = _mm512_add_epi32(lane, _mm512_set1_epi32(blk + 4*t));
      W[t] = _mm512_shuffle_epi8(_mm512_i32gather_epi32(idx, (const void*)base, 1), bswap);
    }
    compress16(st, W);
  }
  /* padding block: 0x80, zeros, 64-bit big-endian bit length */
  uint64_t bits = (uint64_t)len * 8;
  W[0] = _mm512_set1_epi32((int)0x80000000);
  for (int t = 1; t < 14; t++) W[t] = _mm512_setzero_si512();
  W[14] = _mm512_set1_epi32((int)(bits >> 32));
  W[15] = _mm512_set1_epi32((int)(bits & 0xffffffff));
  compress16(st, W);
  /* transpose out: lane i word j -> out[i*32 + 4j] big-endian */
  uint32_t tmp[8][16];
  for (int j = 0; j < 8; j++) _mm512_storeu_si512((void*)tmp[j], _mm512_shuffle_epi8(st[j], bswap));
  for (int i = 0; i < 16; i++) for (int j = 0; j < 8; j++) memcpy(out + i*32 + j*4, &tmp[j][i], 4);
}

/* SHA-NI: the message's 16 groups of four rounds for `n` (constant once inlined) independent messages,
 * state as the instructions want it (ABEF, CDGH), one 64-byte block of each at p[j]. */
#define SHANI __attribute__((target("sha,sse4.1,ssse3"), always_inline)) static inline
#define SHANI_WAYS 4
SHANI void shani_blocks(int n, __m128i s0[], __m128i s1[], const uint8_t *const p[]) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i m[SHANI_WAYS][4], a0[SHANI_WAYS], a1[SHANI_WAYS];
  for (int j = 0; j < n; j++) { a0[j] = s0[j]; a1[j] = s1[j]; }
  for (int g = 0; g < 16; g++) {
    const __m128i k = _mm_loadu_si128((const __m128i *)&K[4 * g]);
    for (int j = 0; j < n; j++) {
      __m128i w;
      if (g < 4) {
        w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p[j] + 16 * g)), bswap);
      } else {
        /* W[t..t+3] from W[t-16..t-13], W[t-12..t-9], W[t-7..t-4] and W[t-4..t-1] */
        w = _mm_sha256msg1_epu32(m[j][g & 3], m[j][(g + 1) & 3]);
        w = _mm_add_epi32(w, _mm_alignr_epi8(m[j][(g + 3) & 3], m[j][(g + 2) & 3], 4));
        w = _mm_sha256msg2_epu32(w, m[j][(g + 3) & 3]);
      }
      m[j][g & 3] = w;
      __m128i t = _mm_add_epi32(w, k);
      s1[j] = _mm_sha256rnds2_epu32(s1[j], s0[j], t);
      t = _mm_shuffle_epi32(t, 0x0E);
      s0[j] = _mm_sha256rnds2_epu32(s0[j], s1[j], t);
    }
  }
  for (int j = 0; j < n; j++) { s0[j] = _mm_add_epi32(s0[j], a0[j]); s1[j] = _mm_add_epi32(s1[j], a1[j]); }
}

/* `n` messages of `len` bytes (len % 64 == 0), message j at base + j*stride; digests to out + j*32. */
SHANI void shani_hash(int n, const uint8_t *base, uint32_t stride, uint32_t len, uint8_t *out) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&H0[0]), 0xB1); /* CDAB */
  __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&H0[4]), 0x1B); /* EFGH */
  const __m128i abef = _mm_alignr_epi8(abcd, efgh, 8);
  const __m128i cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);
  __m128i s0[SHANI_WAYS], s1[SHANI_WAYS];
  const uint8_t *p[SHANI_WAYS];
  for (int j = 0; j < n; j++) { s0[j] = abef; s1[j] = cdgh; }
  for (uint32_t off = 0; off < len; off += 64) {
    for (int j = 0; j < n; j++) p[j] = base + (size_t)j * stride + off;
    shani_blocks(n, s0, s1, p);
  }
  /* padding block: 0x80, zeros, 64-bit big-endian bit length (the same for every message) */
  uint8_t pad[64] = {0x80};
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++) pad[63 - i] = (uint8_t)(bits >> (8 * i));
  for (int j = 0; j < n; j++) p[j] = pad;
  shani_blocks(n, s0, s1, p);
  for (int j = 0; j < n; j++) {
    __m128i feba = _mm_shuffle_epi32(s0[j], 0x1B);
    __m128i dchg = _mm_shuffle_epi32(s1[j], 0xB1);
    _mm_storeu_si128((__m128i *)(out + 32 * j), _mm_shuffle_epi8(_mm_blend_epi16(feba, dchg, 0xF0), bswap));
    _mm_storeu_si128((__m128i *)(out + 32 * j + 16), _mm_shuffle_epi8(_mm_alignr_epi8(dchg, feba, 8), bswap));
  }
}

__attribute__((target("sha,sse4.1,ssse3"), noinline))
static void shani_x16(const uint8_t *base, uint32_t stride, uint32_t len, uint8_t *out) {
  for (int q = 0; q < 16; q += SHANI_WAYS) shani_hash(SHANI_WAYS, base + (size_t)q * stride, stride, len, out + 32 * q);
}

/* 0: neither; 1: AVX-512F and BW (16 lanes); 2: SHA-NI with SSSE3 and SSE4.1 (4 interleaved). */
static int kind = -1;

static int detect(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 1;
  /* CPUID.(EAX=7,ECX=0):EBX bit 29 is SHA; __get_cpuid_count checks the CPU has leaf 7 at all. */
  unsigned a, b, c, d;
  int sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1);
  if (sha && __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1")) return 2;
  return 0;
}

/* Which way sha256_x16 hashes on this CPU: 1 AVX-512, 2 SHA-NI, 0 it cannot (never call it then). */
int sha256_x16_supported(void) {
  if (kind < 0) kind = detect();
  return kind;
}

/* 16 messages of `len` bytes (len % 64 == 0), message i at base + i*stride; digests to out + i*32. */
void sha256_x16(const uint8_t *base, uint32_t stride, uint32_t len, uint8_t *out) {
  if (kind < 0) kind = detect();
  if (kind == 1) sha256_x16_avx512(base, stride, len, out);
  else if (kind == 2) shani_x16(base, stride, len, out);
}

#else /* not x86-64: never used (Bun's SHA-256 hashes everything) */

void sha256_x16(const uint8_t *base, uint32_t stride, uint32_t len, uint8_t *out) {
  (void)base; (void)stride; (void)len; (void)out;
}

int sha256_x16_supported(void) {
  return 0;
}

#endif
