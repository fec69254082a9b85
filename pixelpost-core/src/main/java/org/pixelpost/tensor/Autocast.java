package org.pixelpost.tensor;

import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.DeviceType;
import org.bytedeco.pytorch.global.torch.ScalarType;

/**
 * Mixed precision entered for one region and left as it was found:
 * {@code try (var a = Autocast.bf16(enabled)) { forward... }}. libtorch keeps the autocast state
 * per thread; this restores the previous state (enabled, dtype, weight cache) on close, so a
 * library call never leaves autocast switched for its caller.
 */
public final class Autocast implements AutoCloseable {
    private final boolean active;
    private final DeviceType device;
    private final boolean wasEnabled, wasCache;
    private final ScalarType wasDtype;

    private Autocast(boolean enable, ScalarType dtype, DeviceType device) {
        Engine.start();
        this.active = enable;
        this.device = device;
        this.wasEnabled = torch.is_autocast_enabled(device);
        this.wasCache = torch.is_autocast_cache_enabled();
        this.wasDtype = torch.get_autocast_dtype(device);
        if (enable) {
            torch.set_autocast_cache_enabled(false); // cached casts of the weights would go stale after an update
            torch.set_autocast_dtype(device, dtype);
            torch.set_autocast_enabled(device, true);
        }
    }

    /** bf16 autocast on the CPU while open, if {@code enable}; otherwise nothing changes. */
    public static Autocast bf16(boolean enable) {
        return new Autocast(enable, ScalarType.BFloat16, DeviceType.CPU);
    }

    /** bf16 autocast for the ops on {@code device}'s kind of device (CPU or CUDA) while open, if {@code enable}. */
    public static Autocast bf16(boolean enable, DeviceType device) {
        return new Autocast(enable, ScalarType.BFloat16, device);
    }

    public static boolean enabled() {
        Engine.start();
        return torch.is_autocast_enabled(DeviceType.CPU);
    }

    @Override
    public void close() {
        if (!active) return;
        torch.set_autocast_enabled(device, wasEnabled);
        torch.set_autocast_dtype(device, wasDtype);
        torch.set_autocast_cache_enabled(wasCache);
    }
}
