package org.pixelpost.data;

import org.pixelpost.objective.Batch;

/**
 * The training data as the trainer sees it: micro-batch {@code slot} of optimizer step
 * {@code step}. An implementation must make it a function of the two alone (and of its own
 * seed), so that a resumed run sees exactly the data the uninterrupted run would have.
 *
 * <p>A step's micro-batches are numbered across processes: with {@code A} accumulation steps on
 * {@code W} data-parallel processes, process {@code r}'s micro-batch {@code m} is slot
 * {@code m * W + r}. A step then covers the same samples whatever {@code A} and {@code W} are, as
 * long as {@code A * W} (and the batch size) stay the same.
 */
public interface Batches {
    /** @param step the optimizer step, from 1; @param slot the micro-batch within it, from 0 */
    Batch get(long step, int slot);

    /** Samples (or pairs) in one pass over the data, for epoch counts. */
    long size();
}
