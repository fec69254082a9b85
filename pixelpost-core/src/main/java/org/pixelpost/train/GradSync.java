package org.pixelpost.train;

import java.util.List;
import org.bytedeco.pytorch.Tensor;

/**
 * What a training step shares with the other processes of a data-parallel group: the starting
 * weights, the gradients between backward and clipping (so the clipped norm is the global one),
 * and a few numbers (the step's losses, whether a step was finite, whether to stop). A single
 * process shares nothing: {@link #LOCAL}. {@link DataParallel} is the group over libtorch's c10d.
 */
public interface GradSync {
    /** This process's rank, from 0. */
    default int rank() {
        return 0;
    }

    /** The number of processes. */
    default int worldSize() {
        return 1;
    }

    /** Makes every process hold rank 0's values of {@code tensors}, in place. */
    default void broadcast(List<Tensor> tensors) {}

    /** Replaces the gradients by their mean over the group, in place. */
    default void averageGradients(FlatParameters flat) {}

    /** Replaces each value by its sum over the group. */
    default void sum(double[] values) {}

    /** Returns once every process has called it. */
    default void barrier() {}

    /** Rank 0 tells the others that {@code what} is done. */
    default void rank0Done(String what) {}

    /** Waits, with no time limit, until rank 0 has said {@code what} is done. */
    default void awaitRank0(String what) {}

    GradSync LOCAL = new GradSync() {};
}
