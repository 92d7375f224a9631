//! The fixed template layouts and their template sets.
//!
//! Every layout is a compile-time constant bound to one template id, so an id
//! can never name two layouts while the process lives (RFC 7011 section 8,
//! RFC 3954 section 5.2). A new layout must take a new id; the unit test
//! `template_ids_are_unique` enforces it.
//!
//! The streams send no options templates (exporter, sampling or interface
//! metadata) and no template withdrawal when they stop; collectors that want
//! either see only the two data templates and age them out on their own timer.

use super::ExportProtocol;

/// The address family of a data record, which selects its template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 source and destination addresses.
    V4,
    /// IPv6 source and destination addresses.
    V6,
}

/// One field specifier: information element id and its length in octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// IANA information element id (IPFIX) or field type (NetFlow v9).
    pub element_id: u16,
    /// Field length, octets.
    pub length_octets: u16,
}

/// A fixed-length template: its id and its fields in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateLayout {
    /// Template id (> 255), which data sets name as their set id.
    pub template_id: u16,
    /// Field specifiers in the order the record carries them.
    pub fields: &'static [FieldSpec],
}

impl TemplateLayout {
    /// The length of one data record, octets.
    pub const fn record_len(&self) -> usize {
        let mut total = 0;
        let mut i = 0;
        while i < self.fields.len() {
            total += self.fields[i].length_octets as usize;
            i += 1;
        }
        total
    }

    /// The length of this template record inside a template set, octets.
    pub const fn template_record_len(&self) -> usize {
        4 + 4 * self.fields.len()
    }
}

const fn field(element_id: u16, length_octets: u16) -> FieldSpec {
    FieldSpec {
        element_id,
        length_octets,
    }
}

// Information element ids (IANA IPFIX registry; NetFlow v9 uses the same numbers
// for these fields, RFC 3954 section 8).
const OCTET_DELTA_COUNT: u16 = 1;
const PACKET_DELTA_COUNT: u16 = 2;
const PROTOCOL_IDENTIFIER: u16 = 4;
const IP_CLASS_OF_SERVICE: u16 = 5;
const TCP_CONTROL_BITS: u16 = 6;
const SOURCE_TRANSPORT_PORT: u16 = 7;
const SOURCE_IPV4_ADDRESS: u16 = 8;
const DESTINATION_TRANSPORT_PORT: u16 = 11;
const DESTINATION_IPV4_ADDRESS: u16 = 12;
const V9_LAST_SWITCHED: u16 = 21;
const V9_FIRST_SWITCHED: u16 = 22;
const SOURCE_IPV6_ADDRESS: u16 = 27;
const DESTINATION_IPV6_ADDRESS: u16 = 28;
const ICMP_TYPE_CODE_IPV4: u16 = 32;
const IP_VERSION: u16 = 60;
const FLOW_DIRECTION: u16 = 61;
const ICMP_TYPE_CODE_IPV6: u16 = 139;
const FLOW_START_MILLISECONDS: u16 = 152;
const FLOW_END_MILLISECONDS: u16 = 153;

/// The fields after the addresses, shared by every layout: ports, protocol,
/// TCP flags (two octets, RFC 7125), ToS, ICMP type and code, IP version, flow
/// direction, and 8-octet delta counters.
///
/// `$icmp` is the element that carries ICMP type and code. ipVersion and
/// flowDirection are there because the two-octet ICMP element alone would leave
/// records two octets off a 4-byte multiple: both carry true values (4 or 6, and
/// ingress, which is also what a collector assumes when a router omits it),
/// where padding octets would be read as data by v9 collectors that do not know
/// paddingOctets (210).
macro_rules! common_fields {
    ($icmp:expr) => {
        [
            field(SOURCE_TRANSPORT_PORT, 2),
            field(DESTINATION_TRANSPORT_PORT, 2),
            field(PROTOCOL_IDENTIFIER, 1),
            field(TCP_CONTROL_BITS, 2),
            field(IP_CLASS_OF_SERVICE, 1),
            field($icmp, 2),
            field(IP_VERSION, 1),
            field(FLOW_DIRECTION, 1),
            field(OCTET_DELTA_COUNT, 8),
            field(PACKET_DELTA_COUNT, 8),
        ]
    };
}

/// Fields in one common block (see `common_fields!`).
const COMMON_FIELDS: usize = 10;
/// Fields in every layout: two addresses, the common block, two times.
const LAYOUT_FIELDS: usize = 2 + COMMON_FIELDS + 2;

const fn concat(
    addresses: [FieldSpec; 2],
    common: [FieldSpec; COMMON_FIELDS],
    times: [FieldSpec; 2],
) -> [FieldSpec; LAYOUT_FIELDS] {
    let mut out = [field(0, 0); LAYOUT_FIELDS];
    let mut i = 0;
    while i < 2 {
        out[i] = addresses[i];
        out[2 + COMMON_FIELDS + i] = times[i];
        i += 1;
    }
    let mut j = 0;
    while j < COMMON_FIELDS {
        out[2 + j] = common[j];
        j += 1;
    }
    out
}

const V4_ADDRESSES: [FieldSpec; 2] = [
    field(SOURCE_IPV4_ADDRESS, 4),
    field(DESTINATION_IPV4_ADDRESS, 4),
];
const V6_ADDRESSES: [FieldSpec; 2] = [
    field(SOURCE_IPV6_ADDRESS, 16),
    field(DESTINATION_IPV6_ADDRESS, 16),
];
/// IPFIX: absolute dateTimeMilliseconds (RFC 7011 section 6.1.8).
const IPFIX_TIMES: [FieldSpec; 2] = [
    field(FLOW_START_MILLISECONDS, 8),
    field(FLOW_END_MILLISECONDS, 8),
];
/// NetFlow v9: sysUpTime in ms at the first and last packet (RFC 3954 section 8).
const V9_TIMES: [FieldSpec; 2] = [field(V9_FIRST_SWITCHED, 4), field(V9_LAST_SWITCHED, 4)];

// IPFIX has one ICMP element per family (icmpTypeCodeIPv4 32, icmpTypeCodeIPv6
// 139). NetFlow v9 defines only ICMP_TYPE (32, RFC 3954 section 8), which routers
// export for ICMPv6 flows as well and which nfdump's v9 decoder reads for both.
const IPFIX_V4_FIELDS: [FieldSpec; LAYOUT_FIELDS] = concat(
    V4_ADDRESSES,
    common_fields!(ICMP_TYPE_CODE_IPV4),
    IPFIX_TIMES,
);
const IPFIX_V6_FIELDS: [FieldSpec; LAYOUT_FIELDS] = concat(
    V6_ADDRESSES,
    common_fields!(ICMP_TYPE_CODE_IPV6),
    IPFIX_TIMES,
);
const V9_V4_FIELDS: [FieldSpec; LAYOUT_FIELDS] =
    concat(V4_ADDRESSES, common_fields!(ICMP_TYPE_CODE_IPV4), V9_TIMES);
const V9_V6_FIELDS: [FieldSpec; LAYOUT_FIELDS] =
    concat(V6_ADDRESSES, common_fields!(ICMP_TYPE_CODE_IPV4), V9_TIMES);

/// IPFIX template for IPv4 flows, id 256.
pub const IPFIX_V4: TemplateLayout = TemplateLayout {
    template_id: 256,
    fields: &IPFIX_V4_FIELDS,
};
/// IPFIX template for IPv6 flows, id 257.
pub const IPFIX_V6: TemplateLayout = TemplateLayout {
    template_id: 257,
    fields: &IPFIX_V6_FIELDS,
};
/// NetFlow v9 template for IPv4 flows, id 258.
pub const V9_V4: TemplateLayout = TemplateLayout {
    template_id: 258,
    fields: &V9_V4_FIELDS,
};
/// NetFlow v9 template for IPv6 flows, id 259.
pub const V9_V6: TemplateLayout = TemplateLayout {
    template_id: 259,
    fields: &V9_V6_FIELDS,
};

// Every record and template length is a multiple of four, so consecutive sets stay
// 4-byte aligned without padding (RFC 7011 section 3.3.1, RFC 3954 section 5.3).
// A layout that breaks this must come with padding code; the build stops until then.
const _: () = {
    let layouts = [IPFIX_V4, IPFIX_V6, V9_V4, V9_V6];
    let mut i = 0;
    while i < layouts.len() {
        assert!(layouts[i].record_len() % 4 == 0);
        assert!(layouts[i].template_record_len() % 4 == 0);
        i += 1;
    }
};

/// The IPFIX template set id (RFC 7011 section 3.3.2).
pub const IPFIX_TEMPLATE_SET_ID: u16 = 2;
/// The NetFlow v9 template flowset id (RFC 3954 section 5.2).
pub const V9_TEMPLATE_SET_ID: u16 = 0;

/// The template a protocol uses for an address family.
pub const fn layout(protocol: ExportProtocol, family: AddressFamily) -> &'static TemplateLayout {
    match (protocol, family) {
        (ExportProtocol::Ipfix, AddressFamily::V4) => &IPFIX_V4,
        (ExportProtocol::Ipfix, AddressFamily::V6) => &IPFIX_V6,
        (ExportProtocol::Netflow9, AddressFamily::V4) => &V9_V4,
        (ExportProtocol::Netflow9, AddressFamily::V6) => &V9_V6,
    }
}

/// Both templates of a protocol, in the order the template set carries them.
pub const fn layouts(protocol: ExportProtocol) -> [&'static TemplateLayout; 2] {
    [
        layout(protocol, AddressFamily::V4),
        layout(protocol, AddressFamily::V6),
    ]
}

/// The length of the template set carrying both templates, octets.
pub const fn template_set_len(protocol: ExportProtocol) -> usize {
    let [v4, v6] = layouts(protocol);
    4 + v4.template_record_len() + v6.template_record_len()
}

/// Appends the template set with both templates and returns the records it holds.
///
/// IPFIX (RFC 7011 section 3.4.1) and v9 (RFC 3954 section 5.2) share the record
/// format: template id, field count, then (id, length) pairs; only the set id differs.
pub fn write_template_set(protocol: ExportProtocol, out: &mut Vec<u8>) -> u16 {
    let set_id = match protocol {
        ExportProtocol::Ipfix => IPFIX_TEMPLATE_SET_ID,
        ExportProtocol::Netflow9 => V9_TEMPLATE_SET_ID,
    };
    out.extend_from_slice(&set_id.to_be_bytes());
    out.extend_from_slice(&(template_set_len(protocol) as u16).to_be_bytes());
    let all = layouts(protocol);
    for template in all {
        out.extend_from_slice(&template.template_id.to_be_bytes());
        out.extend_from_slice(&(template.fields.len() as u16).to_be_bytes());
        for spec in template.fields {
            out.extend_from_slice(&spec.element_id.to_be_bytes());
            out.extend_from_slice(&spec.length_octets.to_be_bytes());
        }
    }
    all.len() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_ids_are_unique() {
        let all = [IPFIX_V4, IPFIX_V6, V9_V4, V9_V6];
        for (i, a) in all.iter().enumerate() {
            assert!(a.template_id > 255, "data set ids 0-255 are reserved");
            for b in &all[i + 1..] {
                assert_ne!(a.template_id, b.template_id);
            }
        }
    }

    #[test]
    fn record_lengths_match_the_field_list() {
        // 4+4 addresses, 2+2 ports, 1 protocol, 2 flags, 1 tos, 2 icmp type/code,
        // 1 ip version, 1 direction, 8+8 counters, 8+8 times.
        assert_eq!(IPFIX_V4.record_len(), 52);
        assert_eq!(IPFIX_V6.record_len(), 76);
        // v9 times are 4-octet sysUpTime offsets.
        assert_eq!(V9_V4.record_len(), 44);
        assert_eq!(V9_V6.record_len(), 68);
    }

    #[test]
    fn template_set_length_is_what_is_written() {
        for protocol in [ExportProtocol::Ipfix, ExportProtocol::Netflow9] {
            let mut out = Vec::new();
            assert_eq!(write_template_set(protocol, &mut out), 2);
            assert_eq!(out.len(), template_set_len(protocol));
            assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());
        }
    }
}
