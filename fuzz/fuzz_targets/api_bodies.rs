//! The API's JSON bodies, through the same path `POST /v2.0/<collection>`
//! takes (minus the store): parse, split into objects, create each into the
//! in-memory resources, then settle them with the model's validation. Any
//! body must give a value or a Neutron error, never a panic; what settles
//! must convert to a topology that builds.
//!
//! Input: chunks separated by a line `---`, each `<collection>\n<JSON body>`,
//! where the collection is one of networks, subnets, ports, routers,
//! floatingips, hosts, external-hosts. Chunks run in order on one deployment,
//! so later bodies can refer to what earlier ones created.
#![no_main]

use dvr_serve::logic::{Action, settle};
use dvr_serve::mutate::{Coll, Settings, create};
use dvr_serve::{Resources, body, resources_to_spec};
use libfuzzer_sys::fuzz_target;

fn coll(name: &str) -> Option<Coll> {
    Some(match name.trim() {
        "networks" => Coll::Networks,
        "subnets" => Coll::Subnets,
        "ports" => Coll::Ports,
        "routers" => Coll::Routers,
        "floatingips" => Coll::FloatingIps,
        "hosts" => Coll::Hosts,
        "external-hosts" => Coll::ExternalHosts,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let settings = Settings {
        distributed_default: true,
        dvr_base: "fa:16:3f:00:00:00".parse().unwrap(),
        dvr_mask: "ff:ff:ff:00:00:00".parse().unwrap(),
    };
    let mut res = Resources::default();
    for chunk in text.split("\n---\n").take(64) {
        let (head, json) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let Some(c) = coll(head) else { continue };
        let Ok(v) = body::parse_json(json.as_bytes()) else { continue };
        let Ok((objs, _bulk)) = body::objects(&v, c.singular(), c.plural()) else { continue };
        let mut new = res.clone();
        let made = objs.iter().try_for_each(|a| create(&mut new, c, a, &settings).map(|_| ()));
        if made.is_ok() && settle(&mut new, Action::Create(c.singular())).is_ok() {
            // What the server accepts must be a deployment the model builds.
            let spec = resources_to_spec(&new);
            dvr_model::build("fuzz", &spec).expect("a settled deployment builds");
            res = new;
        }
    }
});
