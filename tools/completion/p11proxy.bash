# bash completion for p11proxy(8), installed by `make install` as
# $(DATAROOTDIR)/bash-completion/completions/p11proxy.
# Slot labels come from `p11proxy policy show --json`, which reads the configuration
# (and the policy overlays) without loading any backend.

_p11proxy_slots()
{
	local conf=()
	[ -n "$1" ] && conf=(--config "$1")
	p11proxy "${conf[@]}" --json policy show 2>/dev/null |
		grep -o '"slot":"[^"]*"' | sed 's/^"slot":"//; s/"$//'
}

_p11proxy()
{
	local cur prev words cword
	_init_completion -s 2>/dev/null || {
		COMPREPLY=()
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD - 1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	local commands="slots test-connection members health sync keys policy pin check-config hash-pin gen-fragment replication-key help"
	local global="-c --config --json -h --help -V --version"
	local cmd="" conf="" i w pos=()

	for ((i = 1; i < cword; i++)); do
		w=${words[i]}
		case $w in
		-c | --config) conf=${words[i + 1]}; i=$((i + 1)) ;;
		--config=*) conf=${w#--config=} ;;
		-c?*) conf=${w#-c} ;;
		-*) ;;
		*) if [ -z "$cmd" ]; then cmd=$w; else pos+=("$w"); fi ;;
		esac
	done

	case $prev in
	-c | --config | --out)
		_filedir 2>/dev/null || COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--slot)
		COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf")" -- "$cur"))
		return
		;;
	--pin-source)
		COMPREPLY=($(compgen -W "env: file:" -- "$cur"))
		return
		;;
	--type)
		COMPREPLY=($(compgen -W "hsm_wrapped hsm_secured" -- "$cur"))
		return
		;;
	--name | --backend | --slot-id | --token-label | --token-serial | --uri | --listen | \
		--hsm-key-label | --description | --id)
		return
		;;
	esac

	if [ -z "$cmd" ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi

	local opts="--json --config --help"
	case $cmd in
	slots | check-config) ;;
	test-connection) [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]] &&
		COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf") help" -- "$cur")) ;;
	health)
		opts="$opts --listen"
		[ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]] &&
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf") help" -- "$cur"))
		;;
	sync)
		opts="$opts --check --repair --dry-run"
		[ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]] &&
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf") help" -- "$cur"))
		;;
	members)
		if [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf") help" -- "$cur"))
		elif [ ${#pos[@]} -eq 1 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "top up down bottom delete add reset help" -- "$cur"))
		fi
		[ "${pos[1]}" = add ] &&
			opts="$opts --name --backend --slot-id --token-label --token-serial --uri --pin-source"
		;;
	keys)
		if [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "list show deactivate activate delete rotate allow deny help" -- "$cur"))
		elif [[ ${pos[0]} == allow || ${pos[0]} == deny ]] && [ ${#pos[@]} -ge 2 ] &&
			[[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "encrypt decrypt sign verify wrap unwrap derive all" -- "$cur"))
		fi
		opts="$opts --slot"
		[ "${pos[0]}" = list ] && opts="$opts --all"
		[ "${pos[0]}" = rotate ] && opts="$opts --id"
		;;
	policy)
		if [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "show set reset help" -- "$cur"))
		elif [ ${#pos[@]} -eq 1 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf")" -- "$cur"))
		elif [ "${pos[0]}" = set ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "write_back=true write_back=false scan=all scan=owned" -- "$cur"))
		fi
		;;
	pin)
		if [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "status reset help" -- "$cur"))
		elif [ ${#pos[@]} -eq 1 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf")" -- "$cur"))
		fi
		;;
	hash-pin) opts="$opts --pin-source" ;;
	gen-fragment) opts="$opts --name --type --hsm-key-label --slot --out --description" ;;
	replication-key)
		if [ ${#pos[@]} -eq 0 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "create help" -- "$cur"))
		elif [ ${#pos[@]} -eq 1 ] && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "$(_p11proxy_slots "$conf")" -- "$cur"))
		fi
		opts="$opts --label --so-pin-source"
		;;
	help)
		[ ${#pos[@]} -eq 0 ] && COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	fi
} && complete -F _p11proxy p11proxy
