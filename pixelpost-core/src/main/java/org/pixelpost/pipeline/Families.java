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
    public static final List<Family> ALL = List.of(new StableDiffusion.SdFamily(), new PixelPostFamily()); // the first that composes a model is its family; PixelPost's takes any

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

    /** The family that reads single files. */
    static Family singleFile(java.nio.file.Path file) throws BadFileException {
        for (Family f : ALL) if (f.hasSingleFile()) return f;
        throw new BadFileException(file, "no model family reads single files");
    }
}
