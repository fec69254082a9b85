package org.pixelpost.objective;

/** Where the pixel term decodes: at the current timestep (Eq. 2) or at the predicted clean latent (Eq. 8). */
public enum PixelDecode {
    /** {@code D(z_t)} against {@code D(sqrt(alphaBar) z + sqrt(1 - alphaBar) epsHat)}: the paper's choice. */
    T,
    /** {@code D(z)} against {@code D((z_t - sqrt(1 - alphaBar) epsHat) / sqrt(alphaBar))}: the Section 4.4 ablation. */
    X0;

    public static PixelDecode of(String s) {
        return switch (s.toLowerCase(java.util.Locale.ROOT)) {
            case "t" -> T;
            case "x0" -> X0;
            default -> throw new org.pixelpost.io.check.InvalidValueException("pixel_decode", "'" + s + "' is not t or x0");
        };
    }
}
