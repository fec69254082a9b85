package org.pixelpost.data;

import org.pixelpost.objective.Batch;

/**
 * The training data as the trainer sees it: micro-batch {@code micro} of optimizer step
 * {@code step}. An implementation must make it a function of the two alone (and of its own
 * seed), so that a resumed run sees exactly the data the uninterrupted run would have.
 */
public interface Batches {
    /** @param step the optimizer step, from 1; @param micro the micro-batch within it, from 0 */
    Batch get(long step, int micro);

    /** Samples (or pairs) in one pass over the data, for epoch counts. */
    long size();
}
