package org.pixelpost.tensor;

import org.pixelpost.train.Trainer;

/** Test code only: a tensor-layer class that reaches up to the trainer, which the layering rule must refuse. */
public final class ArchViolationFixture {
    private ArchViolationFixture() {}

    public static long steps(Trainer t) {
        return t.step();
    }
}
