package org.pixelpost.nn;

import org.bytedeco.pytorch.Tensor;

/** One tensor in, one tensor out. */
@FunctionalInterface
public interface Layer {
    Tensor forward(Tensor x);
}
