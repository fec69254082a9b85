package org.pixelpost.arch;

import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.denoiser.UNet2DCondition;

/** Test code that asks a denoiser's concrete class, as the rule forbids outside the models and their families. */
final class ModelTypeTestFixture {
    static boolean isUNet(Denoiser d) {
        return d instanceof UNet2DCondition;
    }
}
