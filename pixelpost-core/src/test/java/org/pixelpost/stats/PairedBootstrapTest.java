package org.pixelpost.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class PairedBootstrapTest {
    /** Scores [seed][prompt]: a per-prompt difficulty shared by both arms, a per-seed offset, noise, and the arm's shift. */
    private static double[][] arm(SplittableRandom r, double[] difficulty, int seeds, double shift, double seedSpread) {
        double[][] s = new double[seeds][difficulty.length];
        for (int k = 0; k < seeds; k++) {
            double offset = seedSpread * r.nextGaussian();
            for (int j = 0; j < difficulty.length; j++) s[k][j] = difficulty[j] + shift + offset + 0.05 * r.nextGaussian();
        }
        return s;
    }

    private static double[] difficulty(SplittableRandom r, int prompts) {
        double[] d = new double[prompts];
        for (int j = 0; j < prompts; j++) d[j] = 1 + r.nextDouble();
        return d;
    }

    @Test
    void aRealDifferenceIsFoundAndBracketed() {
        SplittableRandom r = new SplittableRandom(1);
        double[] d = difficulty(r, 64);
        PairedBootstrap.Comparison c = PairedBootstrap.compare("a", "b", arm(r, d, 3, -0.05, 0.002), arm(r, d, 3, 0, 0.002), 0.01, 2000, 7);
        PairedBootstrap.Interval m = c.meanDifference();
        assertTrue(m.lo() < -0.05 + 0.02 && m.hi() > -0.05 - 0.02, m.toString());
        assertTrue(m.excludesZero(), m.toString());
        assertTrue(c.winMinusLoss().estimate() > 0.5 && c.winMinusLoss().excludesZero(), c.toString());
        assertEquals(64, c.table().total());
    }

    @Test
    void theIntervalCoversTheTruthAtAboutItsLevel() {
        // no true difference; 200 independent experiments: about 95% of intervals must contain 0
        SplittableRandom r = new SplittableRandom(2);
        int covered = 0, n = 200;
        for (int e = 0; e < n; e++) {
            double[] d = difficulty(r, 40);
            PairedBootstrap.Interval m = PairedBootstrap.compare("a", "b", arm(r, d, 1, 0, 0), arm(r, d, 1, 0, 0), 0.01, 500, e).meanDifference();
            if (!m.excludesZero()) covered++;
        }
        assertTrue(covered >= 180 && covered <= 198, covered + " of " + n);
    }

    @Test
    void trainingSeedSpreadWidensTheInterval() {
        // the same prompt-level data, once with consistent training seeds and once with seeds that disagree
        SplittableRandom r1 = new SplittableRandom(3), r2 = new SplittableRandom(3);
        double[] d1 = difficulty(r1, 48), d2 = difficulty(r2, 48);
        PairedBootstrap.Interval calm = PairedBootstrap.compare("a", "b", arm(r1, d1, 3, 0, 0), arm(r1, d1, 3, 0, 0), 0.01, 2000, 5).meanDifference();
        PairedBootstrap.Interval spread = PairedBootstrap.compare("a", "b", arm(r2, d2, 3, 0, 0.1), arm(r2, d2, 3, 0, 0.1), 0.01, 2000, 5).meanDifference();
        assertTrue(spread.hi() - spread.lo() > 3 * (calm.hi() - calm.lo()), calm + " vs " + spread);
        assertFalse(calm.excludesZero() && spread.excludesZero());
    }

    @Test
    void refusesMismatchedPrompts() {
        assertThrows(IllegalArgumentException.class, () -> PairedBootstrap.compare("a", "b", new double[][] {{1, 2}}, new double[][] {{1, 2, 3}}, 0, 10, 0));
    }
}
