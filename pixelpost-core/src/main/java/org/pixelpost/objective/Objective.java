package org.pixelpost.objective;

/**
 * A training objective: the loss of one micro-batch. {@link Sft}, {@link Dpo} and {@link Simpo}
 * are the paper's; a caller may supply its own.
 */
@FunctionalInterface
public interface Objective {
    Loss loss(StepContext ctx, Batch batch);

    /** Whether batches are winner/loser pairs. */
    default boolean preference() {
        return false;
    }
}
