package org.pixelpost.stats;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

class PairedTableTest {
    @Test
    void pairedTableCountsWinsTiesAndLosses() {
        double[] a = {1.0, 1.0, 1.0, 2.0, 0.5}, b = {2.0, 1.04, 0.9, 1.0, 0.5};
        // prompt 1: A lower by 50%: A wins; 2: within 5%: tie; 3: B lower by 10%: B wins; 4: B wins; 5: equal: tie
        PairedTable t = PairedTable.of("A", "B", a, b, 0.05);
        assertEquals(1, t.aWins());
        assertEquals(2, t.ties());
        assertEquals(2, t.bWins());
        assertEquals(40.0, t.pct(t.ties()), 1e-12);
        assertEquals(5, t.total());
        PairedTable strict = PairedTable.of("A", "B", a, b, 0.0);
        assertEquals(2, strict.aWins());
        assertEquals(1, strict.ties());
    }
}
