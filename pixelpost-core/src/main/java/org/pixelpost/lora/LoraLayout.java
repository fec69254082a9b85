package org.pixelpost.lora;

import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.nn.Module;

/**
 * One LoRA file layout: how its keys name a layer and a role (down, up, alpha), the names it gives
 * a model's layers, and, for the layouts PixelPost writes, how it writes an update. Reading tries
 * every layout in {@link #ALL}; a new layout is one class and one entry there.
 */
public interface LoraLayout {
    /** What a key holds. */
    enum Role { DOWN, UP, ALPHA }

    /** A key read: the file's name for the layer and the role of the tensor. */
    record Key(String module, Role role) {}

    /** Every layout read; the ones that can be written are also named by {@link #written}. */
    List<LoraLayout> ALL = List.of(new KohyaLayout(), new PeftLayout(), new DiffusersOldLayout());

    /** The layout's name ({@code kohya}, {@code peft}, {@code diffusers (old)}). */
    String name();

    /** The layer and role {@code key} stands for in this layout, or null when the key is not this layout's. */
    Key parse(String key);

    /**
     * Adds the names this layout's files give the layer at {@code path} of component {@code prefix}
     * (the model's {@code root}) to {@code names}: file name -> qualified key ({@code prefix.path}).
     */
    void names(String prefix, String path, Module root, Map<String, String> names);

    /** Whether a file of this layout carries an alpha per layer (a missing one is then worth a note). */
    default boolean hasAlpha() {
        return false;
    }

    /** Whether PixelPost writes this layout. */
    default boolean writable() {
        return false;
    }

    /** Puts one layer's update under this layout's keys into {@code out}; only where {@link #writable()}. */
    default void write(String key, LoraWeights.Update u, Map<String, Tensor> out) {
        throw new UnsupportedOperationException(name() + " files are read, not written");
    }

    /** The alpha a file of this layout says for {@code u} (the header's {@code ss_network_alpha}). */
    default double writtenAlpha(LoraWeights.Update u) {
        return u.alpha();
    }

    /** A layout PixelPost writes, by name ({@code --lora-format}, {@code --format}). */
    static LoraLayout written(String name) {
        return written("--format", name);
    }

    /** As {@link #written(String)}, naming {@code option} in the error. */
    static LoraLayout written(String option, String name) {
        for (LoraLayout l : ALL) if (l.writable() && l.name().equalsIgnoreCase(name)) return l;
        throw new InvalidValueException(option, "'" + name + "' is not a LoRA layout PixelPost writes; known: "
            + ALL.stream().filter(LoraLayout::writable).map(LoraLayout::name).toList());
    }
}
