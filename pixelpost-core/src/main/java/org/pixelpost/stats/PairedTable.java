package org.pixelpost.stats;

/**
 * The paper's head-to-head layout, from per-prompt scores (lower is better): A wins where its
 * score is lower than B's by more than the tie margin (relative to the larger of the two), B wins
 * the other way round, and the rest are ties.
 */
public record PairedTable(String a, String b, int aWins, int ties, int bWins, double tieMargin) {
    public static PairedTable of(String a, String b, double[] scoresA, double[] scoresB, double tieMargin) {
        if (scoresA.length != scoresB.length) throw new IllegalArgumentException("score lists differ in length");
        int wa = 0, t = 0, wb = 0;
        for (int i = 0; i < scoresA.length; i++) {
            double x = scoresA[i], y = scoresB[i], gap = tieMargin * Math.max(Math.abs(x), Math.abs(y));
            if (x < y - gap) wa++;
            else if (y < x - gap) wb++;
            else t++;
        }
        return new PairedTable(a, b, wa, t, wb, tieMargin);
    }

    public int total() {
        return aWins + ties + bWins;
    }

    public double pct(int n) {
        return total() == 0 ? 0 : 100.0 * n / total();
    }
}
