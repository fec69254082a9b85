package org.pixelpost.pipeline;

import java.util.ArrayList;
import java.util.List;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.model.text.TextEncoder;

/** The model families PixelPost reads and writes, found by the {@code _class_name} a folder's index gives. */
public final class Families {
    private Families() {}

    /** Every family; adding one is one entry here. */
    public static final List<Family> ALL = List.of(new StableDiffusion.SdFamily(), new PixArt(), new PixelPostFamily()); // the first that composes a model is its family; PixelPost's takes any

    /** The family whose class names include {@code className}, or null. */
    public static Family byClassName(String className) {
        for (Family f : ALL) if (f.classNames().contains(className)) return f;
        return null;
    }

    /** Every class name a folder's index may give. */
    public static List<String> known() {
        List<String> out = new ArrayList<>();
        ALL.forEach(f -> out.addAll(f.classNames()));
        return out;
    }

    /** The family these components compose. */
    public static Family of(Denoiser d, Autoencoder a, TextEncoder t) {
        for (Family f : ALL) if (f.composes(d, a, t)) return f;
        throw new IllegalArgumentException("no model family composes " + d.className() + " + " + a.name() + " + " + t.className()
            + "; the families are " + ALL.stream().map(Family::displayName).toList());
    }

    /** The family whose single-file layout {@code file}'s tensor names are (read from the header where the format has one). */
    static Family singleFile(java.nio.file.Path file) throws java.io.IOException {
        java.util.Set<String> keys = ShapeDetection.shapes(file).keySet();
        for (Family f : ALL) if (f.hasSingleFile() && f.readsSingleFile(keys)) return f;
        throw new BadFileException(file, "not a single file of any model family: neither a Stable Diffusion checkpoint (model.diffusion_model.*) "
            + "nor an original PixArt-alpha checkpoint (x_embedder.*, y_embedder.*, blocks.N.cross_attn.*); keys like " + keys.stream().limit(3).toList());
    }
}
