/*
 * mandel: one frame of a Mandelbrot zoom, as a binary PPM (P6).
 *
 *   mandel FRAME [--frames N] [--width W] [--height H] [--out PATH]
 *
 * Frame FRAME (0 .. N-1) of an N-frame zoom (default 64 frames, 160x120) toward
 * the point -0.743643887037151 + 0.131825904205330i, from a view 3.2 wide down
 * to one 2^-20 times as wide. The zoom is exponential: the same fraction of the
 * way through the animation is the same view whatever N is. The maximum
 * iteration count grows with the zoom depth. Escaped points are coloured with a
 * smooth (continuous) iteration count through a periodic palette; points inside
 * the set are black.
 *
 * Writes PATH (default /work/out/frame.ppm) and nothing else (a partial file is
 * removed on error), and prints one summary line to stdout:
 *
 *   frame 7/64 160x120 width=6.858e-01 maxiter=373 iters=223067 inside=15208
 *
 * Deterministic: the same arguments give byte-identical output on any x86_64
 * machine. Only IEEE double +, -, *, / and comparisons are used, in the order
 * written (no libm transcendental functions, whose glibc versions are picked per
 * CPU at run time; log2 and exp2 are computed here), no threads, no
 * -ffast-math. Build:
 *
 *   gcc -O2 -static -o mandel mandel.c -lm
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CENTER_X (-0.743643887037151)
#define CENTER_Y (0.131825904205330)
#define START_WIDTH 3.2
#define DEPTH_OCTAVES 20.0 /* the last frame is 2^-20 times as wide as the first */
#define BAILOUT2 (256.0 * 256.0)
#define MAX_SIDE 4096
#define MAX_FRAMES 1000000

static const char *USAGE =
    "usage: mandel FRAME [--frames N] [--width W] [--height H] [--out PATH]\n"
    "  FRAME       frame number, 0 .. N-1\n"
    "  --frames N  frames in the zoom (default 64)\n"
    "  --width W   image width in pixels (default 160, at most 4096)\n"
    "  --height H  image height in pixels (default 120, at most 4096)\n"
    "  --out PATH  output PPM (default /work/out/frame.ppm)\n";

/* 2^x for 0 <= x < 1: Taylor series of e^(x ln 2), fixed order of operations. */
static double exp2_frac(double x) {
    const double ln2 = 0.69314718055994530942;
    double y = x * ln2, term = 1.0, sum = 1.0;
    for (int k = 1; k <= 20; k++) {
        term = term * y / (double)k;
        sum = sum + term;
    }
    return sum;
}

/* 2^x for any moderate x: exact power of two (ldexp) times exp2_frac. */
static double exp2_det(double x) {
    double i = floor(x);
    return ldexp(exp2_frac(x - i), (int)i);
}

/* log2(x) for x > 0: exact exponent (frexp) plus an atanh series on the mantissa. */
static double log2_det(double x) {
    const double sqrt_half = 0.70710678118654752440;
    const double inv_ln2 = 1.44269504088896340736;
    int e;
    double m = frexp(x, &e); /* x = m * 2^e, 0.5 <= m < 1 */
    if (m < sqrt_half) {
        m = m * 2.0;
        e = e - 1;
    }
    /* ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172 */
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s, p = s, sum = 0.0;
    for (int k = 1; k <= 19; k += 2) {
        sum = sum + p / (double)k;
        p = p * s2;
    }
    return (double)e + 2.0 * sum * inv_ln2;
}

/* A periodic palette: linear interpolation between stops (position in [0,1), RGB). */
static const double STOP_POS[] = {0.0, 0.16, 0.42, 0.6425, 0.8575, 1.0};
static const unsigned char STOP_RGB[][3] = {
    {0, 7, 100}, {32, 107, 203}, {237, 255, 255}, {255, 170, 0}, {0, 2, 0}, {0, 7, 100},
};

static void palette(double t, unsigned char rgb[3]) {
    t = t - floor(t); /* [0, 1) */
    int i = 0;
    while (i < 4 && t >= STOP_POS[i + 1]) i++;
    double f = (t - STOP_POS[i]) / (STOP_POS[i + 1] - STOP_POS[i]);
    for (int c = 0; c < 3; c++) {
        double v = (double)STOP_RGB[i][c] + f * ((double)STOP_RGB[i + 1][c] - (double)STOP_RGB[i][c]);
        int q = (int)(v + 0.5);
        rgb[c] = (unsigned char)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

static int parse_int(const char *s, long lo, long hi, const char *what, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "mandel: %s must be an integer in %ld..%ld, got '%s'\n", what, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    long frame = -1, frames = 64, width = 160, height = 120;
    const char *frame_arg = NULL, *out = "/work/out/frame.ppm";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(a, "--frames") || !strcmp(a, "--width") || !strcmp(a, "--height") || !strcmp(a, "--out")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mandel: %s needs a value\n%s", a, USAGE);
                return 2;
            }
            const char *v = argv[++i];
            int bad = 0;
            if (!strcmp(a, "--frames")) bad = parse_int(v, 1, MAX_FRAMES, "--frames", &frames);
            else if (!strcmp(a, "--width")) bad = parse_int(v, 1, MAX_SIDE, "--width", &width);
            else if (!strcmp(a, "--height")) bad = parse_int(v, 1, MAX_SIDE, "--height", &height);
            else if (*v == '\0') {
                fprintf(stderr, "mandel: --out must not be empty\n");
                bad = -1;
            } else out = v;
            if (bad) return 2;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "mandel: unknown option %s\n%s", a, USAGE);
            return 2;
        } else if (frame_arg == NULL) {
            frame_arg = a;
        } else {
            fprintf(stderr, "mandel: unexpected argument %s\n%s", a, USAGE);
            return 2;
        }
    }
    if (frame_arg == NULL) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (parse_int(frame_arg, 0, frames - 1, "FRAME", &frame)) return 2;

    /* The view: exponential zoom, t in [0, 1] across the animation. */
    double t = frames > 1 ? (double)frame / (double)(frames - 1) : 0.0;
    double octaves = DEPTH_OCTAVES * t;
    double view_w = START_WIDTH / exp2_det(octaves);
    double step = view_w / (double)width; /* square pixels */
    long maxiter = 160 + (long)(octaves * 96.0);

    unsigned char *img = malloc((size_t)width * (size_t)height * 3);
    if (!img) {
        fprintf(stderr, "mandel: out of memory\n");
        return 1;
    }

    unsigned long long iters = 0, inside = 0;
    for (long py = 0; py < height; py++) {
        double cy = CENTER_Y + ((double)height / 2.0 - (double)py - 0.5) * step;
        for (long px = 0; px < width; px++) {
            double cx = CENTER_X + ((double)px + 0.5 - (double)width / 2.0) * step;
            unsigned char *rgb = img + ((size_t)py * (size_t)width + (size_t)px) * 3;
            /* Main cardioid and period-2 bulb: inside, no iterating needed. */
            double q = (cx - 0.25) * (cx - 0.25) + cy * cy;
            if (q * (q + (cx - 0.25)) <= 0.25 * cy * cy || (cx + 1.0) * (cx + 1.0) + cy * cy <= 0.0625) {
                rgb[0] = rgb[1] = rgb[2] = 0;
                inside++;
                continue;
            }
            double x = 0.0, y = 0.0, x2 = 0.0, y2 = 0.0;
            long n = 0;
            while (n < maxiter && x2 + y2 <= BAILOUT2) {
                y = 2.0 * x * y + cy;
                x = x2 - y2 + cx;
                x2 = x * x;
                y2 = y * y;
                n++;
            }
            iters += (unsigned long long)n;
            if (n >= maxiter) {
                rgb[0] = rgb[1] = rgb[2] = 0;
                inside++;
                continue;
            }
            /* Smooth iteration count: n + 1 - log2(log2 |z|). */
            double log2_abs = log2_det(x2 + y2) / 2.0;
            double mu = (double)n + 1.0 - log2_det(log2_abs);
            if (mu < 0.0) mu = 0.0;
            palette(mu / 48.0, rgb);
        }
    }

    FILE *f = fopen(out, "wb");
    if (!f) {
        fprintf(stderr, "mandel: cannot write %s: %s\n", out, strerror(errno));
        free(img);
        return 1;
    }
    int ok = fprintf(f, "P6\n%ld %ld\n255\n", width, height) > 0;
    ok = ok && fwrite(img, 1, (size_t)width * (size_t)height * 3, f) == (size_t)width * (size_t)height * 3;
    ok = (fclose(f) == 0) && ok;
    free(img);
    if (!ok) {
        fprintf(stderr, "mandel: writing %s failed: %s\n", out, strerror(errno));
        remove(out);
        return 1;
    }
    printf("frame %ld/%ld %ldx%ld width=%.3e maxiter=%ld iters=%llu inside=%llu\n", frame, frames, width, height,
           view_w, maxiter, iters, inside);
    return 0;
}
