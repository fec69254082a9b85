package org.pixelpost.nn;

/**
 * Floating-point operation counts of the layers the models are built from, for one sample: two
 * per multiply-add of the matrix products and convolutions; element-wise work (norms,
 * activations, softmax) is left out, as in the usual MFU accounting. A training step's backward
 * costs twice its forward (gradients for inputs and weights); through a frozen module, where only
 * the input's gradient is needed, once.
 */
public final class Flops {
    private Flops() {}

    /** {@code rows} vectors of width {@code in} through an {@code in -> out} linear layer. */
    public static long linear(long rows, long in, long out) {
        return 2 * rows * in * out;
    }

    /** A {@code k x k} convolution {@code cin -> cout} producing an {@code hOut x wOut} map. */
    public static long conv(long cin, long cout, long k, long hOut, long wOut) {
        return 2 * cout * cin * k * k * hOut * wOut;
    }

    /** Attention of {@code n} queries over {@code t} keys at total width {@code width} (all heads): scores and the weighted sum. */
    public static long attention(long n, long t, long width) {
        return 2 * (2 * n * t * width);
    }
}
