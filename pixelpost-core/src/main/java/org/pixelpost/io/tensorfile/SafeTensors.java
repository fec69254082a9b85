package org.pixelpost.io.tensorfile;

import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.BadFileException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header of
 * {@code name -> {dtype, shape, data_offsets}} plus optional {@code __metadata__}, then the raw
 * little-endian bytes. Reads are memory-mapped region by region, so offsets are 64-bit and files
 * over 2 GiB work. Validation follows the reference implementation: the tensors must tile the data
 * section exactly, with no overlap, gap or overrun.
 */
public final class SafeTensors implements AutoCloseable {
    /** Largest header the reference implementation accepts. */
    static final long MAX_HEADER = 100_000_000L;
    private static final long CHUNK = 1L << 30;
    private static final ObjectMapper JSON = new ObjectMapper();

    public record Entry(String name, String dtype, long[] shape, long begin, long end) {
        /** The element count; an overflowing shape throws {@link ArithmeticException}. */
        public long numel() {
            long n = 1;
            for (long d : shape) n = Math.multiplyExact(n, d);
            return n;
        }
    }

    private final Path path;
    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;

    private SafeTensors(Path path, FileChannel channel, long dataStart, Map<String, Entry> entries,
                        Map<String, String> metadata) {
        this.path = path;
        this.channel = channel;
        this.dataStart = dataStart;
        this.entries = entries;
        this.metadata = metadata;
    }

    /** Opens and validates the header; tensors are read on demand. */
    public static SafeTensors open(Path path) throws IOException {
        FileChannel ch;
        try {
            ch = FileChannel.open(path, StandardOpenOption.READ);
        } catch (IOException e) {
            throw new BadFileException(path, "cannot open: " + e.getMessage(), e);
        }
        try {
            long size = ch.size();
            if (size < 8) throw new BadFileException(path, "not a safetensors file: " + size + " bytes, shorter than the 8-byte header length");
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, len, 0);
            long n = len.flip().getLong();
            if (n < 2 || n > MAX_HEADER) throw new BadFileException(path, "header length " + n + " is out of range (2.." + MAX_HEADER + ")");
            if (8 + n > size) throw new BadFileException(path, "truncated: header claims " + n + " bytes but the file has " + (size - 8) + " after the length");
            ByteBuffer hb = ByteBuffer.allocate((int) n);
            readFully(ch, hb, 8);
            String text = new String(hb.array(), StandardCharsets.UTF_8);
            JsonNode root;
            try {
                root = JSON.readTree(text);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new BadFileException(path, "malformed JSON header: " + e.getOriginalMessage());
            }
            if (root == null || !root.isObject()) throw new BadFileException(path, "malformed header: not a JSON object");
            Map<String, String> meta = new LinkedHashMap<>();
            Map<String, Entry> entries = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> f = it.next();
                if (f.getKey().equals("__metadata__")) {
                    if (!f.getValue().isObject()) throw new BadFileException(path, "__metadata__ must be an object of strings");
                    for (Iterator<Map.Entry<String, JsonNode>> m = f.getValue().fields(); m.hasNext(); ) {
                        Map.Entry<String, JsonNode> kv = m.next();
                        if (!kv.getValue().isTextual()) throw new BadFileException(path, "__metadata__ value for '" + kv.getKey() + "' is not a string");
                        meta.put(kv.getKey(), kv.getValue().asText());
                    }
                } else {
                    entries.put(f.getKey(), entry(path, f.getKey(), f.getValue()));
                }
            }
            long dataSize = size - 8 - n;
            validateLayout(path, entries, dataSize);
            return new SafeTensors(path, ch, 8 + n, Collections.unmodifiableMap(entries), Collections.unmodifiableMap(meta));
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    private static Entry entry(Path path, String name, JsonNode v) throws BadFileException {
        if (!v.isObject()) throw new BadFileException(path, "tensor '" + name + "': header entry is not an object");
        JsonNode dtype = v.get("dtype"), shape = v.get("shape"), offs = v.get("data_offsets");
        if (dtype == null || !dtype.isTextual()) throw new BadFileException(path, "tensor '" + name + "': missing dtype");
        if (dtypeOf(dtype.asText()) == null) throw new BadFileException(path, "tensor '" + name + "': unsupported dtype " + dtype.asText());
        if (shape == null || !shape.isArray()) throw new BadFileException(path, "tensor '" + name + "': missing shape");
        if (offs == null || !offs.isArray() || offs.size() != 2) throw new BadFileException(path, "tensor '" + name + "': data_offsets must be [begin, end]");
        long[] s = new long[shape.size()];
        for (int i = 0; i < s.length; i++) {
            JsonNode d = shape.get(i);
            if (!d.canConvertToLong() || !d.isIntegralNumber() || d.asLong() < 0) throw new BadFileException(path, "tensor '" + name + "': bad shape " + shape);
            s[i] = d.asLong();
        }
        JsonNode b = offs.get(0), e = offs.get(1);
        if (!b.isIntegralNumber() || !e.isIntegralNumber() || !b.canConvertToLong() || !e.canConvertToLong())
            throw new BadFileException(path, "tensor '" + name + "': data_offsets are not 64-bit integers");
        Entry en = new Entry(name, dtype.asText(), s, b.asLong(), e.asLong());
        if (en.begin < 0 || en.end < en.begin) throw new BadFileException(path, "tensor '" + name + "': bad data_offsets [" + en.begin + ", " + en.end + "]");
        long expected;
        try {
            expected = Math.multiplyExact(en.numel(), elementSize(en.dtype));
        } catch (ArithmeticException x) {
            throw new BadFileException(path, "tensor '" + name + "': shape too large");
        }
        if (en.end - en.begin != expected) throw new BadFileException(path, "tensor '" + name + "': data_offsets span "
            + (en.end - en.begin) + " bytes but " + en.dtype + java.util.Arrays.toString(s) + " needs " + expected);
        return en;
    }

    private static void validateLayout(Path path, Map<String, Entry> entries, long dataSize) throws BadFileException {
        List<Entry> sorted = new ArrayList<>(entries.values());
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long pos = 0;
        String prev = null;
        for (Entry e : sorted) {
            if (e.begin < pos) throw new BadFileException(path, "tensor '" + e.name + "' overlaps '" + prev + "' (offset " + e.begin + " < " + pos + ")");
            if (e.begin > pos) throw new BadFileException(path, "gap in the data section before tensor '" + e.name + "' (offset " + e.begin + ", expected " + pos + ")");
            pos = e.end;
            prev = e.name;
        }
        if (pos > dataSize) throw new BadFileException(path, "truncated: tensor '" + prev + "' ends at data offset " + pos + " but the data section has " + dataSize + " bytes");
        if (pos < dataSize) throw new BadFileException(path, (dataSize - pos) + " trailing bytes after the last tensor");
    }

    public Path path() {
        return path;
    }

    public Map<String, Entry> entries() {
        return entries;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** Reads one tensor into libtorch memory, in its stored dtype. */
    public Tensor load(String name) throws IOException {
        Entry e = entries.get(name);
        if (e == null) throw new BadFileException(path, "no tensor named '" + name + "'");
        Engine.start();
        Tensor t = torch.empty(e.shape, new TensorOptions(dtypeOf(e.dtype)), null);
        long len = e.end - e.begin;
        BytePointer dst = new BytePointer(t.data_ptr()).capacity(len);
        for (long off = 0; off < len; off += CHUNK) {
            long n = Math.min(CHUNK, len - off);
            MappedByteBuffer src = channel.map(FileChannel.MapMode.READ_ONLY, dataStart + e.begin + off, n);
            dst.position(off).limit(off + n).asBuffer().put(src);
        }
        return t;
    }

    /** Every tensor, in header order. */
    public Map<String, Tensor> loadAll() throws IOException {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (String k : entries.keySet()) out.put(k, load(k));
        return out;
    }

    public static Map<String, Tensor> read(Path path) throws IOException {
        try (SafeTensors f = open(path)) {
            return f.loadAll();
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }

    public static void write(Path path, Map<String, Tensor> tensors) throws IOException {
        write(path, tensors, Map.of());
    }

    /** Writes atomically: a temporary file beside {@code path}, renamed when complete. */
    public static void write(Path path, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        Engine.start();
        try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) { // contiguous copies are freed when written
            writeScoped(path, tensors, metadata);
        }
    }

    private static void writeScoped(Path path, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            new java.util.TreeMap<>(metadata).forEach(m::put); // sorted: the same run writes the same bytes
        }
        List<Tensor> data = new ArrayList<>();
        long offset = 0;
        for (Map.Entry<String, Tensor> kv : tensors.entrySet()) {
            Tensor t = kv.getValue().detach().cpu().contiguous();
            String dtype = nameOf(t.scalar_type().intern());
            if (dtype == null) throw new IllegalArgumentException("tensor '" + kv.getKey() + "': dtype " + t.scalar_type() + " has no safetensors name");
            ObjectNode e = header.putObject(kv.getKey());
            e.put("dtype", dtype);
            ArrayNode shape = e.putArray("shape");
            for (long d : Tensors.shape(t)) shape.add(d);
            long n = t.nbytes();
            e.putArray("data_offsets").add(offset).add(offset + n);
            offset += n;
            data.add(t);
        }
        byte[] h = JSON.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
        int padded = (h.length + 7) / 8 * 8; // keeps the data section 8-byte aligned
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(h);
        while (head.hasRemaining()) head.put((byte) ' ');
        head.flip();
        AtomicFiles.write(path, tmp -> {
            try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
                while (head.hasRemaining()) out.write(head);
                for (Tensor t : data) {
                    long len = t.nbytes();
                    BytePointer src = new BytePointer(t.data_ptr()).capacity(len);
                    for (long off = 0; off < len; off += CHUNK) {
                        ByteBuffer b = src.position(off).limit(Math.min(len, off + CHUNK)).asBuffer();
                        while (b.hasRemaining()) out.write(b);
                    }
                }
                out.force(true);
            }
        });
    }

    static ScalarType dtypeOf(String name) {
        return switch (name) {
            case "F64" -> ScalarType.Double;
            case "F32" -> ScalarType.Float;
            case "F16" -> ScalarType.Half;
            case "BF16" -> ScalarType.BFloat16;
            case "I64" -> ScalarType.Long;
            case "I32" -> ScalarType.Int;
            case "I16" -> ScalarType.Short;
            case "I8" -> ScalarType.Char;
            case "U8" -> ScalarType.Byte;
            case "BOOL" -> ScalarType.Bool;
            default -> null;
        };
    }

    static String nameOf(ScalarType t) {
        return switch (t) {
            case Double -> "F64";
            case Float -> "F32";
            case Half -> "F16";
            case BFloat16 -> "BF16";
            case Long -> "I64";
            case Int -> "I32";
            case Short -> "I16";
            case Char -> "I8";
            case Byte -> "U8";
            case Bool -> "BOOL";
            default -> null;
        };
    }

    static long elementSize(String dtype) {
        return switch (dtype) {
            case "F64", "I64" -> 8;
            case "F32", "I32" -> 4;
            case "F16", "BF16", "I16" -> 2;
            default -> 1;
        };
    }

    private static void readFully(FileChannel ch, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int r = ch.read(b, pos);
            if (r < 0) throw new IOException("unexpected end of file");
            pos += r;
        }
    }
}
