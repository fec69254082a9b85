package org.pixelpost.train;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * Scalars in TensorBoard's event-file format: TFRecords (length, masked CRC32C, payload, masked
 * CRC32C) of {@code Event} protocol buffers, written by hand since only two messages are needed.
 */
public final class TensorBoard implements AutoCloseable {
    private final OutputStream out;

    public TensorBoard(Path dir) throws IOException {
        Files.createDirectories(dir);
        String host = java.net.InetAddress.getLocalHost().getHostName();
        Path f = dir.resolve(String.format("events.out.tfevents.%d.%s", System.currentTimeMillis() / 1000, host));
        out = Files.newOutputStream(f, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        // Event { wall_time = 1; file_version = 3 }
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        double64(e, 1, System.currentTimeMillis() / 1000.0);
        bytes(e, 3, "brain.Event:2".getBytes(StandardCharsets.UTF_8));
        record(e.toByteArray());
    }

    /** Event { wall_time = 1; step = 2; summary = 5 { value = 1 { tag = 1; simple_value = 2 } } } per scalar. */
    public void scalars(long step, Map<String, Double> values) throws IOException {
        ByteArrayOutputStream summary = new ByteArrayOutputStream();
        for (Map.Entry<String, Double> v : values.entrySet()) {
            ByteArrayOutputStream value = new ByteArrayOutputStream();
            bytes(value, 1, v.getKey().getBytes(StandardCharsets.UTF_8));
            float32(value, 2, v.getValue().floatValue());
            bytes(summary, 1, value.toByteArray());
        }
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        double64(e, 1, System.currentTimeMillis() / 1000.0);
        varintField(e, 2, step);
        bytes(e, 5, summary.toByteArray());
        record(e.toByteArray());
        out.flush();
    }

    /**
     * Removes the events after {@code step} from the event files in {@code dir}: what an interrupted
     * run logged past the checkpoint a resumed run starts from, so the curves do not overlap.
     */
    public static void dropAfter(Path dir, long step) throws IOException {
        if (!Files.isDirectory(dir)) return;
        List<Path> files;
        try (var s = Files.list(dir)) {
            files = s.filter(f -> f.getFileName().toString().startsWith("events.out.tfevents.")).toList();
        }
        for (Path f : files) {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
            ByteArrayOutputStream kept = new ByteArrayOutputStream();
            boolean dropped = false;
            while (b.remaining() >= 12) {
                int start = b.position();
                long len = b.getLong();
                b.getInt();
                if (len < 0 || len > b.remaining() - 4) break; // a record cut short by a kill: dropped
                byte[] data = new byte[(int) len];
                b.get(data);
                b.getInt();
                Long at = stepOf(data);
                if (at != null && at > step) dropped = true;
                else kept.write(b.array(), start, b.position() - start);
            }
            if (dropped || b.hasRemaining()) {
                byte[] bytes = kept.toByteArray();
                org.pixelpost.io.AtomicFiles.write(f, tmp -> Files.write(tmp, bytes));
            }
        }
    }

    /** The {@code step} field (2) of an Event, or null where it has none. */
    static Long stepOf(byte[] event) {
        ByteBuffer b = ByteBuffer.wrap(event).order(ByteOrder.LITTLE_ENDIAN);
        while (b.hasRemaining()) {
            long key = readVarint(b);
            int field = (int) (key >>> 3), wire = (int) (key & 7);
            switch (wire) {
                case 0 -> {
                    long v = readVarint(b);
                    if (field == 2) return v;
                }
                case 1 -> b.position(b.position() + 8);
                case 2 -> b.position(b.position() + (int) readVarint(b));
                case 5 -> b.position(b.position() + 4);
                default -> { return null; }
            }
        }
        return null;
    }

    private static long readVarint(ByteBuffer b) {
        long v = 0;
        for (int shift = 0; b.hasRemaining() && shift < 64; shift += 7) {
            byte x = b.get();
            v |= (long) (x & 0x7F) << shift;
            if ((x & 0x80) == 0) break;
        }
        return v;
    }

    private void record(byte[] data) throws IOException {
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(data.length);
        ByteBuffer h = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        h.put(len.array()).putInt(masked(len.array()));
        out.write(h.array());
        out.write(data);
        out.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(masked(data)).array());
    }

    static int masked(byte[] b) {
        CRC32C c = new CRC32C();
        c.update(b);
        int crc = (int) c.getValue();
        return ((crc >>> 15) | (crc << 17)) + 0xa282ead8;
    }

    private static void varint(ByteArrayOutputStream o, long v) {
        while ((v & ~0x7FL) != 0) {
            o.write((int) ((v & 0x7F) | 0x80));
            v >>>= 7;
        }
        o.write((int) v);
    }

    private static void varintField(ByteArrayOutputStream o, int field, long v) {
        varint(o, (long) field << 3);
        varint(o, v);
    }

    private static void bytes(ByteArrayOutputStream o, int field, byte[] b) {
        varint(o, ((long) field << 3) | 2);
        varint(o, b.length);
        o.writeBytes(b);
    }

    private static void double64(ByteArrayOutputStream o, int field, double d) {
        varint(o, ((long) field << 3) | 1);
        o.writeBytes(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putDouble(d).array());
    }

    private static void float32(ByteArrayOutputStream o, int field, float f) {
        varint(o, ((long) field << 3) | 5);
        o.writeBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(f).array());
    }

    @Override
    public void close() throws IOException {
        out.close();
    }
}
