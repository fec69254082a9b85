package org.pixelpost.stats;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Confidence intervals for a difference between two arms scored on the same prompts, by a
 * two-level bootstrap: each resample draws each arm's training seeds with replacement (the spread
 * between training runs), then the prompts with replacement, keeping the pairing by prompt; the
 * statistic is recomputed on every resample and the 2.5% and 97.5% quantiles bound it. With one
 * training seed per arm it is the ordinary paired bootstrap over prompts.
 *
 * <p>Scores are {@code [trainingSeed][prompt]}, lower is better (distances); each entry may
 * already average several sample seeds of that prompt.
 */
public final class PairedBootstrap {
    private PairedBootstrap() {}

    /** A point estimate and its 95% interval. */
    public record Interval(double estimate, double lo, double hi) {
        /** True where the interval lies wholly on one side of zero. */
        public boolean excludesZero() {
            return lo > 0 || hi < 0;
        }
    }

    /** The head-to-head with intervals: mean score difference (A - B) and win rate difference (A wins - B wins, of prompts). */
    public record Comparison(Interval meanDifference, Interval winMinusLoss, PairedTable table) {}

    /** Mean of A's scores minus mean of B's, over prompts (each prompt's scores averaged over the training seeds). */
    public static Comparison compare(String a, String b, double[][] scoresA, double[][] scoresB, double tieMargin, int resamples, long seed) {
        int p = check(scoresA, scoresB);
        double[] meanA = seedMeans(scoresA, identity(scoresA.length)), meanB = seedMeans(scoresB, identity(scoresB.length));
        PairedTable table = PairedTable.of(a, b, meanA, meanB, tieMargin);
        double diff0 = meanDiff(meanA, meanB, identity(p)), win0 = winMinusLoss(meanA, meanB, identity(p), tieMargin);
        double[] diffs = new double[resamples], wins = new double[resamples];
        SplittableRandom r = new SplittableRandom(seed);
        for (int k = 0; k < resamples; k++) {
            double[] ma = seedMeans(scoresA, draw(r, scoresA.length)), mb = seedMeans(scoresB, draw(r, scoresB.length));
            int[] prompts = draw(r, p);
            diffs[k] = meanDiff(ma, mb, prompts);
            wins[k] = winMinusLoss(ma, mb, prompts, tieMargin);
        }
        return new Comparison(interval(diff0, diffs), interval(win0, wins), table);
    }

    private static int check(double[][] a, double[][] b) {
        if (a.length == 0 || b.length == 0) throw new IllegalArgumentException("each arm needs at least one training seed");
        int p = a[0].length;
        if (p == 0) throw new IllegalArgumentException("no prompts");
        for (double[] row : a) if (row.length != p) throw new IllegalArgumentException("arm A's seeds score different prompt counts");
        for (double[] row : b) if (row.length != p) throw new IllegalArgumentException("arm B scores " + row.length + " prompts, arm A " + p);
        return p;
    }

    private static int[] identity(int n) {
        int[] i = new int[n];
        for (int k = 0; k < n; k++) i[k] = k;
        return i;
    }

    private static int[] draw(SplittableRandom r, int n) {
        int[] i = new int[n];
        for (int k = 0; k < n; k++) i[k] = r.nextInt(n);
        return i;
    }

    /** Per prompt, the mean over the chosen training seeds. */
    private static double[] seedMeans(double[][] scores, int[] seeds) {
        double[] m = new double[scores[0].length];
        for (int s : seeds) for (int j = 0; j < m.length; j++) m[j] += scores[s][j] / seeds.length;
        return m;
    }

    private static double meanDiff(double[] a, double[] b, int[] prompts) {
        double d = 0;
        for (int j : prompts) d += (a[j] - b[j]) / prompts.length;
        return d;
    }

    private static double winMinusLoss(double[] a, double[] b, int[] prompts, double tieMargin) {
        int w = 0, l = 0;
        for (int j : prompts) {
            double gap = tieMargin * Math.max(Math.abs(a[j]), Math.abs(b[j]));
            if (a[j] < b[j] - gap) w++;
            else if (b[j] < a[j] - gap) l++;
        }
        return (w - l) / (double) prompts.length;
    }

    private static Interval interval(double estimate, double[] samples) {
        double[] s = samples.clone();
        Arrays.sort(s);
        int n = s.length;
        return new Interval(estimate, s[(int) Math.floor(0.025 * (n - 1))], s[(int) Math.ceil(0.975 * (n - 1))]);
    }
}
