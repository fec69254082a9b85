package org.pixelpost.train;

/** Linear warm-up to the peak, then constant or a cosine decay to zero at the last step. */
public record LrSchedule(double peak, int warmup, int total, boolean cosine) {
    /** The rate for step {@code s} (1-based: the first update is step 1). */
    public double at(long s) {
        if (warmup > 0 && s <= warmup) return peak * s / warmup;
        if (!cosine) return peak;
        double progress = (double) (s - warmup) / Math.max(1, total - warmup);
        return peak * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
    }
}
