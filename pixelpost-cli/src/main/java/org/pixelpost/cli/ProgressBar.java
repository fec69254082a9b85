package org.pixelpost.cli;

import java.io.PrintStream;

/** A one-line progress display on stderr: bar, count, rate, ETA, and an optional status text. */
final class ProgressBar {
    private final String label;
    private final PrintStream out;
    private final long start = System.nanoTime();
    private final boolean tty = System.console() != null;
    private long lastPrint;

    ProgressBar(String label) {
        this.label = label;
        this.out = System.err;
    }

    void update(long done, long total, String status) {
        long now = System.nanoTime();
        // redraw at most 10 times a second on a terminal, once a 5% step in a log
        boolean last = done >= total;
        if (!last && tty && now - lastPrint < 100_000_000L) return;
        if (!last && !tty && done % Math.max(1, total / 20) != 0) return;
        lastPrint = now;
        double secs = (now - start) / 1e9;
        double per = done > 0 ? secs / done : 0;
        int width = 24, filled = (int) (width * done / Math.max(1, total));
        String bar = "#".repeat(filled) + ".".repeat(width - filled);
        String line = String.format("%s [%s] %d/%d  %.2f s/it  elapsed %s  ETA %s%s", label, bar, done, total, per,
            clock(secs), clock(per * (total - done)), status == null ? "" : "  " + status);
        if (tty) out.print("\r" + line + (last ? "\n" : ""));
        else out.println(line);
        out.flush();
    }

    static String clock(double s) {
        long t = Math.round(s);
        return t >= 3600 ? String.format("%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String.format("%d:%02d", t / 60, t % 60);
    }
}
