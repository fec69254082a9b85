package org.pixelpost.io.tensorfile;

import org.pixelpost.io.check.BadFileException;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipFile;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.tensor.Engine;

/**
 * Reads PyTorch {@code .pth}/{@code .ckpt} files (the zip format of {@code torch.save} since 1.6)
 * with a restricted unpickler. Only tensors, storages, ordered dicts and plain containers are
 * built; any other global in the pickle is refused, never called.
 */
public final class TorchCheckpoint {
    private TorchCheckpoint() {}

    /** A global the pickle referenced but that is not a constructor we run (e.g. a storage class). */
    record Global(String module, String name) {
        String qualified() {
            return module + "." + name;
        }
    }

    /** Python tuple. */
    record Tuple(List<Object> items) {}

    /** Everything the restricted unpickler builds: tensors, dicts, lists, tuples, strings, numbers. */
    public static Object load(Path path) throws IOException {
        Engine.start();
        if (!Files.isRegularFile(path)) throw new BadFileException(path, "no such file");
        try (InputStream in = Files.newInputStream(path)) {
            byte[] magic = in.readNBytes(4);
            if (magic.length < 4) throw new BadFileException(path, "not a PyTorch checkpoint: file is " + magic.length + " bytes");
            if (!(magic[0] == 'P' && magic[1] == 'K')) {
                if ((magic[0] & 0xff) == 0x80) throw new BadFileException(path,
                    "legacy (pre-1.6) PyTorch format is not supported; re-save it with torch.save(obj, path) from a recent PyTorch, or convert it to safetensors");
                throw new BadFileException(path, "not a PyTorch zip checkpoint (no zip signature)");
            }
        }
        ZipFile zip;
        try {
            zip = new ZipFile(path.toFile());
        } catch (ZipException e) {
            throw new BadFileException(path, "corrupt or truncated zip archive (" + e.getMessage() + ")");
        }
        try (zip) {
            String prefix = null;
            for (Enumeration<? extends ZipEntry> en = zip.entries(); en.hasMoreElements(); ) {
                String n = en.nextElement().getName();
                if (n.endsWith("data.pkl") && n.indexOf('/') == n.length() - "data.pkl".length() - 1) {
                    prefix = n.substring(0, n.length() - "data.pkl".length());
                    break;
                }
            }
            if (prefix == null) throw new BadFileException(path, "zip archive has no <name>/data.pkl: not a torch.save checkpoint");
            ZipEntry order = zip.getEntry(prefix + "byteorder");
            if (order != null) {
                String bo = new String(readAll(zip, order, path), StandardCharsets.US_ASCII).trim();
                if (!bo.equals("little")) throw new BadFileException(path, "byte order '" + bo + "' is not supported (only little-endian)");
            }
            byte[] pickle = readAll(zip, zip.getEntry(prefix + "data.pkl"), path);
            try {
                return new Unpickler(path, zip, prefix, pickle).run();
            } catch (StackOverflowError | ClassCastException | IndexOutOfBoundsException e) {
                throw new BadFileException(path, "malformed pickle (" + e.getClass().getSimpleName() + ")");
            }
        }
    }

    /**
     * The tensors of a checkpoint as a flat state dict. A top-level {@code state_dict} (Lightning,
     * LDM) is descended into; other nested dicts are flattened with dotted keys; non-tensor values
     * (step counters, config strings) are skipped.
     */
    public static Map<String, Tensor> readStateDict(Path path) throws IOException {
        Object root = load(path);
        if (root instanceof Map<?, ?> m && m.get("state_dict") instanceof Map<?, ?> sd) root = sd;
        Map<String, Tensor> out = new LinkedHashMap<>();
        flatten(path, "", root, out, 0);
        if (out.isEmpty()) throw new BadFileException(path, "holds no tensors");
        return out;
    }

    /** Dicts nested deeper than this are refused (a state dict is a few levels deep). */
    static final int MAX_DEPTH = 64;

    private static void flatten(Path path, String prefix, Object o, Map<String, Tensor> out, int depth) throws BadFileException {
        if (depth > MAX_DEPTH) throw new BadFileException(path, "dicts nested more than " + MAX_DEPTH + " levels deep: not a state dict");
        if (o instanceof Tensor t) {
            out.put(prefix, t);
        } else if (o instanceof Map<?, ?> m) {
            for (Map.Entry<?, ?> e : m.entrySet())
                flatten(path, prefix.isEmpty() ? String.valueOf(e.getKey()) : prefix + "." + e.getKey(), e.getValue(), out, depth + 1);
        }
    }

    private static byte[] readAll(ZipFile zip, ZipEntry e, Path path) throws IOException {
        try (InputStream in = zip.getInputStream(e)) {
            return in.readAllBytes();
        } catch (ZipException x) {
            throw new BadFileException(path, "corrupt zip entry " + e.getName() + " (" + x.getMessage() + ")");
        }
    }

    private static final class Unpickler {
        private static final Object MARK = new Object();
        private final Path path;
        private final ZipFile zip;
        private final String prefix;
        private final DataInputStream in;
        private final List<Object> stack = new ArrayList<>();
        private final Map<Long, Object> memo = new HashMap<>();
        private final Map<String, Tensor> storages = new HashMap<>();

        Unpickler(Path path, ZipFile zip, String prefix, byte[] data) {
            this.path = path;
            this.zip = zip;
            this.prefix = prefix;
            this.in = new DataInputStream(new java.io.ByteArrayInputStream(data));
        }

        Object run() throws IOException {
            try {
                return loop();
            } catch (java.io.EOFException e) {
                throw new BadFileException(path, "pickle data ends early (truncated data.pkl)");
            } catch (IndexOutOfBoundsException | ClassCastException e) {
                throw new BadFileException(path, "malformed pickle (" + e.getMessage() + ")");
            }
        }

        private Object loop() throws IOException {
            while (true) {
                int op = in.readUnsignedByte();
                switch (op) {
                    case 0x80 -> in.readUnsignedByte();                // PROTO
                    case 0x95 -> in.readLong();                        // FRAME
                    case '.' -> { return pop(); }                      // STOP
                    case '(' -> stack.add(MARK);
                    case ')' -> stack.add(new Tuple(List.of()));
                    case 0x85 -> stack.add(tuple(pop()));
                    case 0x86 -> { Object b = pop(), a = pop(); stack.add(tuple(a, b)); }
                    case 0x87 -> { Object c = pop(), b = pop(), a = pop(); stack.add(tuple(a, b, c)); }
                    case 't' -> stack.add(new Tuple(popMark()));
                    case ']' -> stack.add(new ArrayList<>());
                    case 'l' -> stack.add(new ArrayList<>(popMark()));
                    case '}' -> stack.add(new LinkedHashMap<>());
                    case 'd' -> { List<Object> kv = popMark(); Map<Object, Object> m = new LinkedHashMap<>(); putAll(m, kv); stack.add(m); }
                    case 0x8f -> stack.add(new ArrayList<>());          // EMPTY_SET, kept as a list
                    case 0x90 -> { List<Object> items = popMark(); asList(peek()).addAll(items); } // ADDITEMS
                    case 'a' -> { Object v = pop(); asList(peek()).add(v); }
                    case 'e' -> { List<Object> items = popMark(); asList(peek()).addAll(items); }
                    case 's' -> { Object v = pop(), k = pop(); asMap(peek()).put(k, v); }
                    case 'u' -> { List<Object> kv = popMark(); putAll(asMap(peek()), kv); }
                    case 'N' -> stack.add(null);
                    case 0x88 -> stack.add(Boolean.TRUE);
                    case 0x89 -> stack.add(Boolean.FALSE);
                    case 'J' -> stack.add((long) Integer.reverseBytes(in.readInt()));
                    case 'K' -> stack.add((long) in.readUnsignedByte());
                    case 'M' -> stack.add((long) Short.toUnsignedInt(Short.reverseBytes(in.readShort())));
                    case 0x8a -> stack.add(long1(in.readUnsignedByte()));
                    case 'G' -> stack.add(in.readDouble());             // BINFLOAT is big-endian
                    case 'X' -> stack.add(str(Integer.reverseBytes(in.readInt())));
                    case 0x8c -> stack.add(str(in.readUnsignedByte()));
                    case 0x8d -> stack.add(str(Math.toIntExact(Long.reverseBytes(in.readLong()))));
                    case 'C' -> stack.add(bytes(in.readUnsignedByte()));
                    case 'B' -> stack.add(bytes(Integer.reverseBytes(in.readInt())));
                    case 'q' -> memo.put((long) in.readUnsignedByte(), peek());
                    case 'r' -> memo.put(Integer.toUnsignedLong(Integer.reverseBytes(in.readInt())), peek());
                    case 0x94 -> memo.put((long) memo.size(), peek());  // MEMOIZE
                    case 'h' -> stack.add(memoGet(in.readUnsignedByte()));
                    case 'j' -> stack.add(memoGet(Integer.toUnsignedLong(Integer.reverseBytes(in.readInt()))));
                    case 'c' -> stack.add(global(line(), line()));
                    case 0x93 -> { Object name = pop(), module = pop(); stack.add(global((String) module, (String) name)); }
                    case 'Q' -> stack.add(persistentLoad(pop()));       // BINPERSID
                    case 'R' -> { Object args = pop(), fn = pop(); stack.add(reduce(fn, (Tuple) args)); }
                    case 0x81 -> { Object args = pop(), cls = pop(); stack.add(reduce(cls, (Tuple) args)); } // NEWOBJ
                    case 'b' -> pop();                                  // BUILD: state of an allowed object (dict metadata), dropped
                    case '0' -> pop();
                    case '2' -> stack.add(peek());
                    default -> throw new BadFileException(path, String.format("unsupported pickle opcode 0x%02x", op));
                }
            }
        }

        private Object global(String module, String name) throws BadFileException {
            String q = module + "." + name;
            boolean allowed = q.equals("collections.OrderedDict")
                || q.equals("torch._utils._rebuild_tensor_v2")
                || q.equals("torch._utils._rebuild_parameter")
                || q.equals("torch._utils._rebuild_parameter_with_state")
                || (module.equals("torch") && name.endsWith("Storage") && storageType(name) != null);
            if (!allowed) throw new BadFileException(path, "refuses pickle global '" + q
                + "': only tensors, storages, ordered dicts and plain containers are loaded (nothing in the file is executed)");
            return new Global(module, name);
        }

        private Object reduce(Object fn, Tuple args) throws IOException {
            if (!(fn instanceof Global g)) throw new BadFileException(path, "malformed pickle: call of a non-global");
            List<Object> a = args.items();
            switch (g.qualified()) {
                case "collections.OrderedDict" -> { return new LinkedHashMap<>(); }
                case "torch._utils._rebuild_tensor_v2" -> {
                    if (a.size() < 4 || !(a.get(0) instanceof Tensor storage) || !(a.get(1) instanceof Long offset)
                        || !(a.get(2) instanceof Tuple sizeT) || !(a.get(3) instanceof Tuple strideT))
                        throw new BadFileException(path, "malformed tensor record (expected storage, offset, size, stride)");
                    long[] size = longs(sizeT), stride = longs(strideT);
                    checkView(storage.numel(), offset, size, stride);
                    return torch.as_strided(storage, size, stride, new org.bytedeco.pytorch.LongOptional(offset)).clone();
                }
                case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state" -> { return a.get(0); }
                default -> throw new BadFileException(path, "refuses to call '" + g.qualified() + "'");
            }
        }

        /** Sizes and strides checked before libtorch sees them: non-negative, and the view inside its storage. */
        private void checkView(long storageNumel, long offset, long[] size, long[] stride) throws BadFileException {
            if (size.length != stride.length) throw new BadFileException(path, "tensor has " + size.length + " sizes but " + stride.length + " strides");
            if (offset < 0) throw new BadFileException(path, "tensor view has a negative offset " + offset);
            long numel = 1, last = offset;
            for (int i = 0; i < size.length; i++) {
                if (size[i] < 0) throw new BadFileException(path, "tensor view has a negative size " + java.util.Arrays.toString(size));
                if (stride[i] < 0) throw new BadFileException(path, "tensor view has a negative stride " + java.util.Arrays.toString(stride));
                try {
                    numel = Math.multiplyExact(numel, size[i]);
                    if (size[i] > 0) last = Math.addExact(last, Math.multiplyExact(size[i] - 1, stride[i]));
                } catch (ArithmeticException x) {
                    throw new BadFileException(path, "tensor view size " + java.util.Arrays.toString(size) + " overflows");
                }
            }
            if (numel > 0 && last >= storageNumel)
                throw new BadFileException(path, "tensor view reaches past its storage (" + storageNumel + " elements)");
        }

        private Tensor persistentLoad(Object pid) throws IOException {
            if (!(pid instanceof Tuple t) || t.items().size() < 5 || !"storage".equals(t.items().get(0)))
                throw new BadFileException(path, "unsupported persistent id " + pid);
            if (!(t.items().get(1) instanceof Global type) || !(t.items().get(4) instanceof Long numel))
                throw new BadFileException(path, "malformed storage record " + pid);
            String key = String.valueOf(t.items().get(2));
            ScalarType dtype = storageType(type.name());
            if (dtype == null) throw new BadFileException(path, "storage data/" + key + " has an unsupported type '" + type.qualified() + "'");
            Tensor cached = storages.get(key);
            if (cached != null) return cached;
            ZipEntry e = zip.getEntry(prefix + "data/" + key);
            if (e == null) throw new BadFileException(path, "storage data/" + key + " is missing from the archive");
            // the size is checked against the archive before anything is allocated
            long elementSize = elementSize(dtype), nbytes;
            if (numel < 0) throw new BadFileException(path, "storage data/" + key + " claims " + numel + " elements");
            try {
                nbytes = Math.multiplyExact(numel, elementSize);
            } catch (ArithmeticException x) {
                throw new BadFileException(path, "storage data/" + key + " claims " + numel + " elements, more than any file holds");
            }
            if (e.getSize() < 0 || e.getSize() < nbytes || nbytes > Files.size(path) * 1100L)
                throw new BadFileException(path, "storage data/" + key + " holds " + e.getSize() + " bytes, needs " + nbytes + " (truncated or corrupt)");
            Tensor s = torch.empty(new long[] {numel}, new TensorOptions(dtype), null);
            BytePointer dst = new BytePointer(s.data_ptr()).capacity(nbytes);
            byte[] buf = new byte[1 << 20];
            try (InputStream is = zip.getInputStream(e)) {
                long off = 0;
                while (off < nbytes) {
                    int r = is.read(buf, 0, (int) Math.min(buf.length, nbytes - off));
                    if (r < 0) throw new BadFileException(path, "storage data/" + key + " ends after " + off + " of " + nbytes + " bytes (truncated)");
                    dst.position(off).put(buf, 0, r);
                    off += r;
                }
            } catch (ZipException x) {
                throw new BadFileException(path, "corrupt storage data/" + key + " (" + x.getMessage() + ")");
            }
            storages.put(key, s);
            return s;
        }

        private static long elementSize(ScalarType t) {
            return switch (t) {
                case Double, Long -> 8;
                case Float, Int -> 4;
                case Half, BFloat16, Short -> 2;
                default -> 1;
            };
        }

        private static ScalarType storageType(String name) {
            return switch (name) {
                case "FloatStorage" -> ScalarType.Float;
                case "DoubleStorage" -> ScalarType.Double;
                case "HalfStorage" -> ScalarType.Half;
                case "BFloat16Storage" -> ScalarType.BFloat16;
                case "LongStorage" -> ScalarType.Long;
                case "IntStorage" -> ScalarType.Int;
                case "ShortStorage" -> ScalarType.Short;
                case "CharStorage" -> ScalarType.Char;
                case "ByteStorage", "UntypedStorage" -> ScalarType.Byte;
                case "BoolStorage" -> ScalarType.Bool;
                default -> null;
            };
        }

        private Object long1(int n) throws IOException {
            byte[] b = in.readNBytes(n);
            if (b.length < n) throw new java.io.EOFException();
            byte[] be = new byte[Math.max(1, n)];
            for (int i = 0; i < n; i++) be[n - 1 - i] = b[i];
            BigInteger v = n == 0 ? BigInteger.ZERO : new BigInteger(be);
            return v.bitLength() < 64 ? (Object) v.longValue() : v;
        }

        private String str(int n) throws IOException {
            return new String(bytes(n), StandardCharsets.UTF_8);
        }

        private byte[] bytes(int n) throws IOException {
            if (n < 0) throw new BadFileException(path, "malformed pickle: negative length");
            byte[] b = in.readNBytes(n);
            if (b.length < n) throw new java.io.EOFException();
            return b;
        }

        private String line() throws IOException {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            for (int c; (c = in.readUnsignedByte()) != '\n'; ) b.write(c);
            return b.toString(StandardCharsets.UTF_8);
        }

        private Object memoGet(long k) throws BadFileException {
            if (!memo.containsKey(k)) throw new BadFileException(path, "malformed pickle: memo key " + k + " unset");
            return memo.get(k);
        }

        private Object pop() {
            return stack.remove(stack.size() - 1);
        }

        private Object peek() {
            return stack.get(stack.size() - 1);
        }

        private List<Object> popMark() throws BadFileException {
            int i = stack.size() - 1;
            while (i >= 0 && stack.get(i) != MARK) i--;
            if (i < 0) throw new BadFileException(path, "malformed pickle: no mark");
            List<Object> items = new ArrayList<>(stack.subList(i + 1, stack.size()));
            stack.subList(i, stack.size()).clear();
            return items;
        }

        private static Tuple tuple(Object... xs) {
            return new Tuple(java.util.Arrays.asList(xs));
        }

        @SuppressWarnings("unchecked")
        private List<Object> asList(Object o) throws BadFileException {
            if (o instanceof List<?> l) return (List<Object>) l;
            throw new BadFileException(path, "malformed pickle: append to a non-list");
        }

        @SuppressWarnings("unchecked")
        private Map<Object, Object> asMap(Object o) throws BadFileException {
            if (o instanceof Map<?, ?> m) return (Map<Object, Object>) m;
            throw new BadFileException(path, "malformed pickle: setitem on a non-dict");
        }

        private static void putAll(Map<Object, Object> m, List<Object> kv) {
            for (int i = 0; i + 1 < kv.size(); i += 2) m.put(kv.get(i), kv.get(i + 1));
        }

        private long[] longs(Tuple t) throws BadFileException {
            long[] r = new long[t.items().size()];
            for (int i = 0; i < r.length; i++) {
                if (!(t.items().get(i) instanceof Long v)) throw new BadFileException(path, "malformed tensor record: size or stride " + t.items().get(i) + " is not an integer");
                r[i] = v;
            }
            return r;
        }
    }
}
