package org.pixelpost.train;

import java.util.Map;
import org.bytedeco.pytorch.Tensor;

/**
 * The step between backward and clipping where gradients are made the same on every process
 * (averaged over the data-parallel group). A single process needs nothing: {@link #LOCAL}.
 */
@FunctionalInterface
public interface GradSync {
    /** Replaces each trainable parameter's gradient by its average over the group. */
    void allReduce(Map<String, Tensor> params);

    GradSync LOCAL = params -> {};
}
