package org.pixelpost.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.pixelpost.io.check.InvalidValueException;

/**
 * Options grouped in records and bound flat: a root record whose components are option records,
 * each leaf declared once with its help and default ({@link Opt}). Every leaf is one key of a flat
 * JSON object ({@code pixel_weight}) and one command-line flag ({@code --pixel-weight}), whichever
 * group it sits in, so grouping the options changes no name.
 */
public final class FlatOptions {
    private FlatOptions() {}

    /** An option's help and default, on the component that declares it. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Opt {
        /** The default's {@link #def} when the option has none (null). */
        String NONE = "\u0000none";

        String help();

        /** The default, as a JSON value would spell it without quotes (a list: comma-separated; "" for an empty one). */
        String def() default NONE;
    }

    /** One leaf option: its group's component and its own. */
    public record Field(RecordComponent group, RecordComponent leaf) {
        /** The JSON key: the name in snake_case. */
        public String key() {
            return leaf.getName().replaceAll("([a-z0-9])([A-Z])", "$1_$2").toLowerCase(java.util.Locale.ROOT);
        }

        /** The flag: the name in kebab-case, with two dashes. */
        public String flag() {
            return "--" + key().replace('_', '-');
        }

        public Class<?> type() {
            return leaf.getType();
        }

        public String help() {
            return leaf.getAnnotation(Opt.class).help();
        }

        /** The default as a JSON value. */
        public JsonNode defaultJson(ObjectMapper om) {
            String d = leaf.getAnnotation(Opt.class).def();
            if (d.equals(Opt.NONE)) return om.nullNode();
            Class<?> t = type();
            if (t == List.class) {
                var a = om.createArrayNode();
                if (!d.isEmpty()) Arrays.stream(d.split(",")).map(String::strip).forEach(a::add);
                return a;
            }
            if (t == String.class) return om.getNodeFactory().textNode(d);
            try {
                return om.readTree(d);
            } catch (java.io.IOException e) {
                throw new IllegalStateException("the default of " + key() + " is not a value: " + d, e);
            }
        }

        /** What the value must be, in words. */
        public String typeInWords() {
            Class<?> t = type();
            if (t == int.class || t == long.class) return "an integer";
            if (t == double.class) return "a number";
            if (t == boolean.class) return "true or false";
            if (t == List.class) return "a list of strings";
            return "a string";
        }

        Object get(Record root) {
            try {
                return leaf.getAccessor().invoke(group.getAccessor().invoke(root));
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /** Every leaf option of {@code root}, group by group, in declaration order. */
    public static List<Field> fields(Class<? extends Record> root) {
        List<Field> out = new ArrayList<>();
        for (RecordComponent g : root.getRecordComponents()) {
            if (!g.getType().isRecord()) throw new IllegalStateException(root.getSimpleName() + "." + g.getName() + " is not an option record");
            for (RecordComponent leaf : g.getType().getRecordComponents()) {
                if (leaf.getAnnotation(Opt.class) == null) throw new IllegalStateException(g.getType().getSimpleName() + "." + leaf.getName() + " has no @Opt");
                out.add(new Field(g, leaf));
            }
        }
        return out;
    }

    /** The flat JSON object of {@code root}'s values. */
    public static ObjectNode toJson(Record root, ObjectMapper om) {
        ObjectNode j = om.createObjectNode();
        for (Field f : fields(root.getClass())) j.set(f.key(), om.valueToTree(f.get(root)));
        return j;
    }

    /** The defaults, with {@code overrides} (flat keys) over them; an unknown key or a value of the wrong type is refused by name. */
    public static <R extends Record> R bind(Class<R> root, JsonNode overrides, ObjectMapper om) {
        List<Field> fields = fields(root);
        java.util.Set<String> keys = new java.util.HashSet<>();
        fields.forEach(f -> keys.add(f.key()));
        overrides.fieldNames().forEachRemaining(k -> {
            if (!keys.contains(k)) throw new InvalidValueException(k, "is not a known option");
        });
        List<Object> groups = new ArrayList<>();
        for (RecordComponent g : root.getRecordComponents()) {
            List<Object> values = new ArrayList<>();
            for (Field f : fields) {
                if (!f.group().getName().equals(g.getName())) continue;
                JsonNode v = overrides.has(f.key()) ? overrides.get(f.key()) : f.defaultJson(om);
                values.add(value(f, v, om));
            }
            groups.add(construct(g.getType(), values));
        }
        return root.cast(construct(root, groups));
    }

    private static Object value(Field f, JsonNode v, ObjectMapper om) {
        Class<?> t = f.type();
        boolean ok = v.isNull() ? !t.isPrimitive()
            : t == int.class || t == long.class ? v.isIntegralNumber() && (t == long.class || v.canConvertToInt())
            : t == double.class ? v.isNumber()
            : t == boolean.class ? v.isBoolean()
            : t == List.class ? v.isArray() && java.util.stream.StreamSupport.stream(v.spliterator(), false).allMatch(JsonNode::isTextual)
            : v.isTextual();
        if (!ok) throw new InvalidValueException(f.key(), (v.isNull() ? "null is not allowed" : v + " is not of the right type") + "; " + f.typeInWords() + " is required");
        return om.convertValue(v, om.getTypeFactory().constructType(f.leaf().getGenericType()));
    }

    private static Object construct(Class<?> record, List<Object> values) {
        Class<?>[] types = Arrays.stream(record.getRecordComponents()).map(RecordComponent::getType).toArray(Class<?>[]::new);
        try {
            return record.getDeclaredConstructor(types).newInstance(values.toArray());
        } catch (java.lang.reflect.InvocationTargetException e) {
            if (e.getCause() instanceof RuntimeException r) throw r; // a record's own check, by the option's name
            throw new IllegalStateException(e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot build " + record.getSimpleName(), e);
        }
    }
}
