using System.Globalization;
using System.Text;

namespace Engram.Pipeline.Simulation.EngramApp;

/// <summary>
/// JSON written byte for byte as Go's <c>encoding/json</c> Marshal writes it (Go 1.22 and later, which upstream
/// Engram is built with): fields in struct order, <c>omitempty</c> fields left out when empty, strings escaped with
/// HTML escaping on, floats in Go's shortest form. Payload bytes are compared, hashed and stored by the cloud, so
/// "equivalent JSON" is not enough.
/// </summary>
public static class GoJson
{
    private const string Hex = "0123456789abcdef";

    /// <summary>Appends <paramref name="value"/> as a quoted JSON string the way Go escapes it.</summary>
    /// <remarks>
    /// <c>&lt; &gt; &amp;</c> become <c>\u003c \u003e \u0026</c>, U+2028/U+2029 become <c>\u2028 \u2029</c>;
    /// <c>\" \\ \b \f \n \r \t</c> take their short forms, other control characters <c>\u00XX</c>; everything else,
    /// non-ASCII included, is written as is. A lone surrogate (invalid UTF-8 to Go) becomes <c>\ufffd</c>.
    /// </remarks>
    public static void AppendString(StringBuilder json, string value)
    {
        json.Append('"');
        var start = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c >= ' ' && c is not ('"' or '\\' or '<' or '>' or '&' or '\u2028' or '\u2029') && !char.IsSurrogate(c))
            {
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
                continue;
            }
            json.Append(value, start, i - start);
            switch (c)
            {
                case '"' or '\\':
                    json.Append('\\').Append(c);
                    break;
                case '\b':
                    json.Append("\\b");
                    break;
                case '\f':
                    json.Append("\\f");
                    break;
                case '\n':
                    json.Append("\\n");
                    break;
                case '\r':
                    json.Append("\\r");
                    break;
                case '\t':
                    json.Append("\\t");
                    break;
                default:
                    var code = char.IsSurrogate(c) ? '\ufffd' : c;
                    json.Append("\\u").Append(Hex[code >> 12]).Append(Hex[(code >> 8) & 0xF]).Append(Hex[(code >> 4) & 0xF]).Append(Hex[code & 0xF]);
                    break;
            }
            start = i + 1;
        }
        json.Append(value, start, value.Length - start).Append('"');
    }

    /// <summary>A float64 as Go writes it: shortest round-trip digits, plain notation from 1e-6 up to 1e21, else <c>1e-07</c> cleaned to <c>1e-7</c>.</summary>
    public static string Float(double value)
    {
        if (double.IsNaN(value) || double.IsInfinity(value))
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, "Go's encoding/json refuses NaN and infinities.");
        }
        if (value == 0)
        {
            return double.IsNegative(value) ? "-0" : "0";
        }
        var (negative, digits, pointAt) = ShortestDigits(value);
        var abs = Math.Abs(value);
        var text = new StringBuilder(negative ? "-" : "");
        if (abs is >= 1e-6 and < 1e21)
        {
            if (pointAt <= 0)
            {
                text.Append("0.").Append('0', -pointAt).Append(digits);
            }
            else if (pointAt >= digits.Length)
            {
                text.Append(digits).Append('0', pointAt - digits.Length);
            }
            else
            {
                text.Append(digits, 0, pointAt).Append('.').Append(digits, pointAt, digits.Length - pointAt);
            }
            return text.ToString();
        }
        text.Append(digits[0]);
        if (digits.Length > 1)
        {
            text.Append('.').Append(digits, 1, digits.Length - 1);
        }
        var exponent = pointAt - 1;
        // strconv writes at least two exponent digits; encoding/json then turns e-07 into e-7.
        text.Append(exponent < 0 ? "e-" : "e+")
            .Append(exponent < 0 ? (-exponent).ToString(CultureInfo.InvariantCulture) : exponent.ToString("00", CultureInfo.InvariantCulture));
        return text.ToString();
    }

    /// <summary>The shortest round-trip decimal digits of <paramref name="value"/> and where the decimal point falls among them.</summary>
    private static (bool Negative, string Digits, int PointAt) ShortestDigits(double value)
    {
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        var negative = text[0] == '-';
        if (negative)
        {
            text = text[1..];
        }
        var exponent = 0;
        var e = text.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(text[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }
        var point = text.IndexOf('.', StringComparison.Ordinal);
        var digits = point < 0 ? text : text.Remove(point, 1);
        var pointAt = (point < 0 ? text.Length : point) + exponent;
        var leading = digits.Length - digits.TrimStart('0').Length;
        digits = digits[leading..].TrimEnd('0');
        return (negative, digits, pointAt - leading);
    }
}

/// <summary>One JSON object written field by field, in the order the Go struct declares them.</summary>
internal sealed class GoJsonObject
{
    private readonly StringBuilder _json;
    private bool _first = true;

    public GoJsonObject(int capacity = 256)
    {
        _json = new StringBuilder(capacity).Append('{');
    }

    public GoJsonObject String(string name, string value)
    {
        GoJson.AppendString(Name(name), value);
        return this;
    }

    /// <summary>A <c>string</c> field tagged <c>omitempty</c>: left out when empty.</summary>
    public GoJsonObject StringOmitEmpty(string name, string value) => value.Length == 0 ? this : String(name, value);

    /// <summary>A <c>*string</c> field tagged <c>omitempty</c>: left out when nil, written even when it points at "".</summary>
    public GoJsonObject StringOrNil(string name, string? value) => value is null ? this : String(name, value);

    public GoJsonObject Int(string name, long value)
    {
        Name(name).Append(value.ToString(CultureInfo.InvariantCulture));
        return this;
    }

    /// <summary>A <c>*float64</c> field tagged <c>omitempty</c>: left out when nil, written even when zero.</summary>
    public GoJsonObject FloatOrNil(string name, double? value)
    {
        if (value is { } number)
        {
            Name(name).Append(GoJson.Float(number));
        }
        return this;
    }

    /// <summary>A <c>bool</c> field tagged <c>omitempty</c>: left out when false.</summary>
    public GoJsonObject TrueOmitFalse(string name, bool value)
    {
        if (value)
        {
            Name(name).Append("true");
        }
        return this;
    }

    /// <summary>Closes the object; call once.</summary>
    public string Build() => _json.Append('}').ToString();

    private StringBuilder Name(string name)
    {
        if (!_first)
        {
            _json.Append(',');
        }
        _first = false;
        return _json.Append('"').Append(name).Append("\":");
    }
}
