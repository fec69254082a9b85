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

    /** The index among the processes on this machine (which GPU a process takes), from 0. */
    default int localRank() {
        return 0;
    }

    /**
     * Micro-batch {@code micro}'s slot in the step over all processes: its samples and its draws
     * depend on the slot, not on how the step is split among processes and micro-batches.
     */
    default int slot(int micro) {
        return micro * worldSize() + rank();
    }

    /** The slots of a step of {@code gradAccum} micro-batches per process. */
    default int slots(int gradAccum) {
        return gradAccum * worldSize();
    }

    /**
     * Averages the gradients over the group; {@code finite} says whether this process's
     * micro-batches were. Returns false where the step must be skipped: a process whose loss was not
     * finite poisons its gradients with NaN, so that every process's norm check sees it and all
     * skip the same update.
     */
    default boolean averageGradients(FlatParameters flat, boolean finite) {
        if (worldSize() == 1) return finite;
        if (!finite) flat.grad().fill_(org.pixelpost.tensor.Tensors.s(Double.NaN));
        averageGradients(flat);
        return true;
    }

    /**
     * Turns this process's step terms into their mean over the processes, in place, and returns
     * whether any process asked to stop (so that every process stops after the same step). A lone
     * process's terms are its own.
     */
    default boolean meanTerms(java.util.Map<String, Double> terms, boolean stopAsked) {
        if (worldSize() == 1) return stopAsked;
        List<String> keys = List.copyOf(terms.keySet());
        double[] v = new double[keys.size() + 1];
        for (int i = 0; i < keys.size(); i++) v[i] = terms.get(keys.get(i));
        v[keys.size()] = stopAsked ? 1 : 0;
        sum(v);
        for (int i = 0; i < keys.size(); i++) terms.put(keys.get(i), v[i] / worldSize());
        return v[keys.size()] > 0;
    }

    /** Returns once every process has called it. */
    default void barrier() {}

    /** Rank 0 tells the others that {@code what} is done. */
    default void rank0Done(String what) {}

    /** Waits, with no time limit, until rank 0 has said {@code what} is done. */
    default void awaitRank0(String what) {}

    GradSync LOCAL = new GradSync() {};
}
